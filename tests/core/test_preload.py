"""The warm interpreter DVC's stages fork from: which runs it takes, what a fork takes on from its
launcher (streams, folder, environment, arguments, exit status, signals), and that nothing outlives
its launcher or the idle time."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from stages.lib.core import preload
from stages.lib.core.preload import Request

ROOT = Path(__file__).resolve().parents[2]
STAGE_RUN = {"DVC_STAGE": "train@retrained"}


@pytest.mark.parametrize("argv, orig_argv, environ, expected", [
    (["-m"], ["python", "-m", "stages.train", "retrained"], STAGE_RUN, "stages.train"),
    (["-m"], ["python", "-X", "importtime", "-m", "stages.report"], STAGE_RUN, "stages.report"),
    (["-m"], ["python", "-m", "stages.train", "retrained"], {}, None),                                   # not DVC
    (["-m"], ["python", "-m", "stages.train"], {**STAGE_RUN, "FACE_BIAS_PRELOAD": "0"}, None),           # off
    (["-m"], ["python", "-m", "stages.train"], {**STAGE_RUN, "FACE_BIAS_VERBOSE": "1"}, None),           # verbose
    (["-m"], ["python", "-m", "stages.train", "--verbose"], STAGE_RUN, None),
    (["-c"], ["python", "-c", "import stages"], STAGE_RUN, None),                                         # not -m
    (["-m"], ["python", "-m", "pytest"], STAGE_RUN, None),                                                # not a stage
    (["<preloaded>"], ["python", "-m", "stages.train"], STAGE_RUN, None),                                # a fork itself
])
def test_only_stages_that_dvc_runs_are_handed_to_a_server(argv, orig_argv, environ, expected):
    assert preload.requested_module(argv, orig_argv, environ) == expected


def test_a_server_serves_one_set_of_import_time_settings():
    base = {"HOME": "/home/a", "TF_NUM_INTRAOP_THREADS": "2"}
    key = preload.server_key(base, niceness=0)
    assert preload.server_key({**base, "HOME": "/home/b", "DVC_STAGE": "x"}, niceness=0) == key
    assert preload.server_key({**base, "TF_NUM_INTRAOP_THREADS": "1"}, niceness=0) != key
    assert preload.server_key({**base, "OMP_NUM_THREADS": "1"}, niceness=0) != key
    assert preload.server_key(base, niceness=10) != key


def test_a_forked_stage_is_timed_from_its_launchers_start():
    assert preload.process_started({preload.STARTED_ENV: "1234.5"}) == 1234.5
    assert abs(preload.process_started({}) - time.time()) < 3600   # this process's own start


@pytest.fixture
def short_temp(monkeypatch):
    """A short temporary folder (a socket's path must stay short) for servers' files, here and in the
    processes the test starts (TMPDIR)."""
    folder = tempfile.mkdtemp(prefix="pl", dir="/tmp")
    (Path(folder) / f"face-bias-preload-{os.getuid()}").mkdir(mode=0o700)
    monkeypatch.setattr(preload, "server_folder", lambda: Path(folder) / f"face-bias-preload-{os.getuid()}")
    monkeypatch.setenv("TMPDIR", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start_server(key: str, **popen) -> subprocess.Popen:
    """A server importing only `json`, once its socket is there."""
    process = subprocess.Popen([sys.executable, "-c", f"from stages.lib.core import preload; "
                                f"preload.serve({key!r}, ('json',))"], cwd=ROOT,
                               env={**os.environ, preload.IDLE_ENV: "30"}, **popen)
    socket_file = preload.server_folder() / f"{key}.sock"
    deadline = time.monotonic() + 30
    while not socket_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return process


@pytest.fixture
def server(short_temp):
    """A server with its files in a short temporary folder; its key."""
    key = "test" + str(os.getpid())
    process = start_server(key)
    yield key
    process.terminate()
    process.wait(10)


def stage_module(folder: Path, body: str) -> Request:
    """A request to run a module of `body` from `folder` (as the stage's working folder)."""
    (folder / "probe_stage.py").write_text(textwrap.dedent(body))
    return Request(module="probe_stage", args=["retrained", "--flag"], cwd=str(folder),
                   environ={**os.environ, "PROBE_VALUE": "from the launcher"}, path=[str(folder), *sys.path], umask=0o027)


def test_the_fork_runs_the_stage_as_its_launcher_would(server, tmp_path, capfd):
    request = stage_module(tmp_path, """
        import os, sys
        print("argv", sys.argv[1:], "cwd", os.getcwd(), "value", os.environ["PROBE_VALUE"])
        print("project modules", [name for name in sys.modules if name.split(".")[0] == "stages"])
        print("umask", oct(os.umask(0)))
        print("to stderr", file=sys.stderr)
        sys.exit(3)
    """)
    status = preload._ask_server(server, request)
    out, err = capfd.readouterr()
    assert status == {"exit": 3}
    assert f"argv ['retrained', '--flag'] cwd {tmp_path} value from the launcher" in out
    assert "project modules []" in out   # the project's code is imported afresh by every stage
    assert "umask 0o27" in out
    assert err.strip() == "to stderr"


def test_a_server_started_with_sigchld_ignored_still_learns_each_stages_status(short_temp, tmp_path):
    process = start_server("ignored", preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    try:
        assert preload._ask_server("ignored", stage_module(tmp_path, "raise SystemExit(3)\n")) == {"exit": 3}
    finally:
        process.terminate()
        process.wait(10)


def test_a_stage_that_fails_prints_its_traceback_and_exits_1(server, tmp_path, capfd):
    request = stage_module(tmp_path, "raise RuntimeError('broken stage')\n")
    assert preload._ask_server(server, request) == {"exit": 1}
    assert "RuntimeError: broken stage" in capfd.readouterr().err


def test_no_server_means_the_stage_runs_where_it_was_started(short_temp, tmp_path):
    assert preload._ask_server("nobody", stage_module(tmp_path, "")) is None


def launcher(server_key: str, folder: Path, seconds: int) -> subprocess.Popen:
    """A launching process handing a stage that writes its pid then sleeps to the server."""
    pid_file = folder / "pid"
    (folder / "probe_stage.py").write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                           f"time.sleep({seconds})\n")
    code = (f"import sys, os; from stages.lib.core import preload; "
            f"request = preload.Request(module='probe_stage', args=[], cwd={str(folder)!r}, environ=dict(os.environ), "
            f"path=[{str(folder)!r}, *sys.path], umask=0o22); "
            f"preload._exit_like(preload._ask_server({server_key!r}, request))")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return process


def ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_signal_to_the_launcher_reaches_the_stage_and_the_launcher_dies_of_it(server, tmp_path):
    process = launcher(server, tmp_path, 60)
    stage = int((tmp_path / "pid").read_text())
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == -signal.SIGTERM
    assert ends_within(stage, 5)


def test_a_stage_does_not_outlive_a_killed_launcher(server, tmp_path):
    process = launcher(server, tmp_path, 60)
    stage = int((tmp_path / "pid").read_text())
    process.kill()
    process.wait(10)
    assert ends_within(stage, 5), "the stage kept running after its launcher was killed"


def test_an_idle_server_leaves_and_takes_its_socket_and_lock(short_temp):
    environ = {**os.environ, preload.IDLE_ENV: "0.5"}
    done = subprocess.run([sys.executable, "-c", "from stages.lib.core import preload; preload.serve('idle', ())"],
                          cwd=ROOT, env=environ, timeout=30)
    assert done.returncode == 0
    assert sorted(path.name for path in preload.server_folder().iterdir()) == []


def test_a_folder_open_to_others_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    assert preload.server_folder().stat().st_mode & 0o777 == 0o700
    preload.server_folder().chmod(0o777)
    with pytest.raises(PermissionError, match="not this user's own folder"):
        preload.server_folder()
