"""Per-stage timing (stages/lib/core/timing.py) and the table bench/where_time_goes.py prints."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.lib.core.timing import read_timings, start_timing, timing_record, timing_table

ROOT = Path(__file__).resolve().parents[2]


def test_finish_writes_wall_cpu_and_rate_of_the_run(tmp_path):
    timing = start_timing("train", key="retrained")
    started = time.process_time()
    while time.process_time() - started < 0.2:  # 0.2 CPU s, however loaded the machine
        pass
    record = timing.finish(faces=600, folder=tmp_path)
    written = json.loads((tmp_path / "train@retrained.json").read_text())
    assert written == record
    assert record["stage"] == "train@retrained"
    # other threads of this process (TensorFlow's, once an earlier test imported it) may add CPU time
    # os.times counts in clock ticks (10 ms); other threads of this process (TensorFlow's, once an
    # earlier test imported it) may add CPU time
    assert 0.18 <= record["cpu_s"] <= record["wall_s"] * record["cores"] + 0.05 and record["wall_s"] < 60
    assert record["faces_per_s"] == pytest.approx(600 / record["wall_s"], rel=0.01)
    assert record["cpu_share"] == pytest.approx(record["cpu_s"] / (record["wall_s"] * record["cores"]), rel=0.01)


def test_cpu_seconds_count_the_worker_processes_waited_for(tmp_path):
    timing = start_timing("identity")
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"],
                   check=True)
    record = timing.finish(folder=tmp_path)
    assert record["cpu_s"] >= 0.35  # the child's 0.4 s of CPU, not only this process's
    assert record["faces"] is None and record["faces_per_s"] is None


def test_table_sorts_slowest_first_with_shares_of_the_total(tmp_path):
    for name, wall, cpu, faces in (("report", 10.0, 9.0, None), ("features", 30.0, 55.0, 3000), ("crop", 20.0, 38.0, 3000)):
        (tmp_path / f"{name}.json").write_text(json.dumps(
            timing_record(name, wall=wall, cpu=cpu, faces=faces, cores=2)))
    records = read_timings(tmp_path)
    assert [r["stage"] for r in records] == ["features", "crop", "report"]
    lines = timing_table(records).splitlines()
    assert lines[2].startswith("| features | 30.0 | 50.0% | 55.0 | 92% | 3,000 | 100.0 |")
    assert lines[3].startswith("| crop | 20.0 | 33.3% |")
    assert lines[-1].startswith("| **total** | 60.0 | 100% | 102.0 |")


def test_bench_prints_the_table_of_a_timing_folder(tmp_path):
    (tmp_path / "split.json").write_text(json.dumps(timing_record("split", wall=2.0, cpu=1.0, faces=100, cores=2)))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "where_time_goes.py"), str(tmp_path)],
                          capture_output=True, text=True, check=True)
    assert "| split | 2.0 | 100.0% | 1.0 | 25% | 100 | 50.0 |" in done.stdout
    empty = subprocess.run([sys.executable, str(ROOT / "bench" / "where_time_goes.py"), str(tmp_path / "none")],
                           capture_output=True, text=True)
    assert empty.returncode == 2 and "no timing files" in empty.stderr
