"""Where the time goes: every stage records its own run's wall and CPU seconds and faces processed.

    timing = start_timing("train", key=experiment)   # first line of the stage's main
    ...
    timing.finish(faces=len(rows))                   # where the stage succeeds

`finish` writes params.paths.timing/train@<experiment>.json: wall seconds, CPU seconds (this process
and the worker processes it has waited for: user + system), faces processed and faces/s, the cores
seen and the share of them used (CPU s / (wall s x cores): 1.0 is every core busy all along), and the
start-up: seconds from the process's start (its launcher's, where a warm server ran it: core/preload.py)
to the stage's first line, imports included. One file
per stage (and per `foreach` key), overwritten by the stage's next successful run, so the folder holds
the last run of each stage; a run that fails writes nothing. The files are git-ignored and read by no
stage, so the report stays the same for the same inputs; `bench/where_time_goes.py` prints them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from stages.lib.core.files import write_json
from stages.lib.core.params import ParamsError, load_params
from stages.lib.core.preload import process_started


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have been waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class StageTiming:
    """A stage's run being timed from its creation (`start_timing`) to `finish`."""

    stage: str
    key: str | None = None
    wall_start: float = field(default_factory=time.perf_counter)
    cpu_start: float = field(default_factory=cpu_seconds)
    startup: float = field(default_factory=lambda: max(0.0, time.time() - process_started()))

    @property
    def name(self) -> str:
        """`stage`, or `stage@key` for one run of a `foreach` stage (train@retrained)."""
        return f"{self.stage}@{self.key}" if self.key else self.stage

    def finish(self, faces: int | None = None, *, folder: Path | None = None) -> dict:
        """Record the run so far into `folder` (default: params.paths.timing; nothing is written when
        params.yaml cannot be read) and return the record."""
        record = timing_record(self.name, wall=time.perf_counter() - self.wall_start,
                               cpu=cpu_seconds() - self.cpu_start, faces=faces, cores=os.cpu_count() or 1,
                               startup=self.startup)
        folder = folder if folder is not None else timing_folder()
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            write_json(record, Path(folder) / f"{self.name}.json")
        return record


def start_timing(stage: str, *, key: str | None = None) -> StageTiming:
    """Start timing a stage's run now (wall clock and CPU)."""
    return StageTiming(stage, key)


def timing_record(name: str, *, wall: float, cpu: float, faces: int | None, cores: int,
                  startup: float | None = None) -> dict:
    """The JSON a stage's run leaves behind (pure: the measured figures in, the record out)."""
    return {
        "stage": name,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cores": cores,
        "cpu_share": round(cpu / (wall * cores), 3) if wall > 0 else None,
        "faces": faces,
        "faces_per_s": round(faces / wall, 2) if faces and wall > 0 else None,
        "startup_s": None if startup is None else round(startup, 3),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def timing_folder() -> Path | None:
    """params.paths.timing (paths are the same under every profile, so params.yaml says it); None
    where params.yaml cannot be read (the stage reports that itself)."""
    try:
        return load_params().paths.timing
    except ParamsError:
        return None


def read_timings(folder: Path) -> list[dict]:
    """Every stage's last record in `folder`, slowest first."""
    records = [json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.json"))]
    return sorted(records, key=lambda record: -record["wall_s"])


def timing_table(records: list[dict]) -> str:
    """A markdown table "where the time goes": per stage wall s, share of the total, CPU s, CPU share
    of the cores, faces and faces/s; slowest first, with the total last."""
    total_wall = sum(record["wall_s"] for record in records)
    total_cpu = sum(record["cpu_s"] for record in records)
    lines = ["| stage | wall s | share | CPU s | cores busy | faces | faces/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for record in sorted(records, key=lambda record: -record["wall_s"]):
        share = record["wall_s"] / total_wall if total_wall > 0 else 0.0
        busy = "" if record["cpu_share"] is None else f"{record['cpu_share']:.0%}"
        faces = "" if record["faces"] is None else f"{record['faces']:,}"
        rate = "" if record["faces_per_s"] is None else f"{record['faces_per_s']:,.1f}"
        lines.append(f"| {record['stage']} | {record['wall_s']:.1f} | {share:.1%} | {record['cpu_s']:.1f} | {busy} "
                     f"| {faces} | {rate} |")
    lines.append(f"| **total** | {total_wall:.1f} | 100% | {total_cpu:.1f} | | | |")
    return "\n".join(lines)
