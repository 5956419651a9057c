"""The progress display of long loops: a line now and then off a terminal, with the rate and time left."""

import io

import pytest

from stages.lib.core.progress import LineProgress, format_duration, progress, progress_line


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_every_interval_with_count_rate_and_time_left():
    clock, out = Clock(), io.StringIO()
    bar = LineProgress(1000, "features", "img", interval=30, clock=clock, stream=out)
    for _ in range(10):
        clock.now += 10
        bar.update(25)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "features: 75/1,000 img (7.5%), 2.5 img/s, ETA 6m 10s"
    assert len(lines) == 4  # at 30, 60 and 90 s, then the last line
    assert lines[-1] == "features: 250 img in 1m 40s (2.5 img/s)"


def test_a_loop_shorter_than_the_interval_prints_nothing():
    out = io.StringIO()
    with LineProgress(10, "crop", "img", interval=30, clock=Clock(), stream=out) as bar:
        bar.update(10)
    assert out.getvalue() == ""


def test_a_resumed_pass_counts_its_rate_from_this_run_only():
    clock, out = Clock(), io.StringIO()
    bar = LineProgress(100, "features", "img", initial=60, interval=10, clock=clock, stream=out)
    clock.now = 10
    bar.update(20)
    assert out.getvalue().splitlines()[0] == "features: 80/100 img (80.0%), 2 img/s, ETA 10s"


def test_bytes_and_an_upper_bound():
    assert progress_line("get x.tar", 3 << 20, 8 << 20, "B", rate=1 << 20) == (
        "get x.tar: 3.0 MiB/8.0 MiB (37.5%), 1.0 MiB/s, ETA 5s")
    assert progress_line("train age", 10, 250, "epoch", rate=2.0, at_most=True, note="val_loss 3.2") == (
        "train age: 10/250 epoch (4.0%), 2 epoch/s, ETA at most 2m 00s; val_loss 3.2")
    assert progress_line("link", 5, None, "file", rate=50) == "link: 5 file, 50 file/s"


@pytest.mark.parametrize("seconds, text", [(4.4, "4s"), (200, "3m 20s"), (7500, "2h 05m")])
def test_durations(seconds, text):
    assert format_duration(seconds) == text


def test_off_a_terminal_lines_are_chosen_and_false_shows_nothing(capsys):
    assert isinstance(progress(10, "x", show=None), LineProgress)  # pytest's stderr is not a terminal
    with progress(10, "x", show=False) as quiet:
        quiet.update(10)
    assert capsys.readouterr().err == ""
