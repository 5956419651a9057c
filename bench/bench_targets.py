"""The pipeline's time targets, measured from a clean clone as a new user runs it.

    python bench/bench_targets.py                          # demo: target 240 s, then one params change: 40 s
    python bench/bench_targets.py --profile real-offline   # the real photos in ../shared: target 25 min (long)
    python bench/bench_targets.py --keep /tmp/demo-clone   # keep the clone (e.g. to re-run single stages)

Clones this checkout's HEAD (committed work only) into a temporary folder, runs
`dvc exp run -S profile=<profile>` there with this interpreter's environment, and prints its wall time
against the target (how far over, when over), the stages' own table "where the time goes" (each
stage's timing file, stages/lib/core/timing.py) and the time DVC itself took (the total minus the
stages). Then, unless --no-change: one experiment's params changed (experiments.<--change>, its
oversampling factor or a group set), `dvc exp run` again, its time against the 40 s target, and the
stages it re-ran. The time outside the stages is split into each stage's start-up (recorded by the
stage: from its process's start, or its launcher's where a warm interpreter ran it, to its first
line) and DVC's own work. Other processes on the machine slow every figure: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.lib.core.timing import read_timings, timing_table  # noqa: E402

TARGETS = {"demo": 240.0, "real-offline": 25 * 60.0}
CHANGE_TARGET = 40.0


def run(args: list[str], cwd: Path) -> tuple[float, str]:
    """(wall s, output) of a command run with this interpreter's folder first on PATH (dvc's stages use it)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1"}
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed after {time.perf_counter() - started:.0f} s:\n"
                         f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return time.perf_counter() - started, done.stdout + done.stderr


def against(seconds: float, target: float) -> str:
    """`123.4 s (target 180 s: met)` or `(target 180 s: 43.2 s over, x1.24)`."""
    if seconds <= target:
        return f"{seconds:.1f} s (target {target:.0f} s: met, {target - seconds:.1f} s to spare)"
    return f"{seconds:.1f} s (target {target:.0f} s: NOT met, {seconds - target:.1f} s over, x{seconds / target:.2f})"


def change_one_experiment(project: Path, experiment: str) -> str:
    """Edit params.yaml's experiments.<experiment> so that only it re-trains; says what changed."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    entry = params["experiments"][experiment]
    if entry.get("oversample"):
        entry["oversample"][0]["factor"] += 1
        change = f"experiments.{experiment}.oversample[0].factor -> {entry['oversample'][0]['factor']}"
    else:
        entry["oversample"] = [{"min_age": 60, "factor": 2}]
        change = f"experiments.{experiment}.oversample -> [{{min_age: 60, factor: 2}}]"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return change


def timing_of(project: Path, params_file: Path) -> list[dict]:
    folder = project / yaml.safe_load(params_file.read_text())["paths"]["timing"]
    return read_timings(folder) if folder.is_dir() else []


def why_over(records: list[dict], *, total: float) -> str:
    """Where the time outside the stages' own code goes: each stage's start-up as it recorded it (from
    its process's start, or its launcher's where a warm interpreter ran it, to its first line) and
    what is left for DVC itself."""
    runs: dict[str, list[float]] = {}
    for record in records:
        runs.setdefault(record["stage"].split("@")[0], []).append(record.get("startup_s") or 0.0)
    lines = ["| stage module | runs | start-up s (each, mean) | start-up s (all) |", "|---|---:|---:|---:|"]
    for module, startups in sorted(runs.items(), key=lambda item: -sum(item[1])):
        lines.append(f"| {module} | {len(startups)} | {sum(startups) / len(startups):.2f} | {sum(startups):.1f} |")
    own = sum(record["wall_s"] for record in records)
    startup = sum(sum(startups) for startups in runs.values())
    lines.append(f"\nof {total:.1f} s: the stages' own code {own:.1f} s; their {len(records)} processes' start-up "
                 f"{startup:.1f} s; DVC itself (hashing, locks, the experiment's commit) and the processes' exits "
                 f"{total - own - startup:.1f} s")
    return "\n".join(lines)


def measure(project: Path, args: argparse.Namespace) -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(project)], ROOT)
    run(["git", "checkout", "-q", commit], project)
    dvc = [sys.executable, "-m", "dvc"]
    load_before = os.getloadavg()[0]
    total, output = run(dvc + ["exp", "run", "-S", f"profile={args.profile}"], project)
    records = timing_of(project, project / "params.yaml")
    stages = sum(record["wall_s"] for record in records)
    print(f"commit {commit[:10]}, profile {args.profile}, {os.cpu_count()} cores, stages "
          f"{'each in a fresh interpreter' if args.fresh_interpreters else 'forked from a warm interpreter'}, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"clean clone, dvc exp run -S profile={args.profile}: {against(total, TARGETS[args.profile])}")
    print(f"stages {stages:.1f} s ({len(records)} runs), DVC and process start-up outside the stages {total - stages:.1f} s")
    print(timing_table(records))
    print("\nwhere the time outside the stages goes (start-up as each stage recorded it):")
    print(why_over(records, total=total))
    if args.no_change:
        return
    change = change_one_experiment(project, args.change)
    seconds, output = run(dvc + ["exp", "run"], project)
    rerun = re.findall(r"Running stage '([^']+)'", output)
    print(f"\none experiment's params changed ({change}), dvc exp run: {against(seconds, CHANGE_TARGET)}")
    print(f"stages re-run: {', '.join(rerun) or 'none'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(TARGETS), default="demo")
    parser.add_argument("--change", default="oversample_x3", help="the experiment whose params change")
    parser.add_argument("--no-change", action="store_true", help="only the full run")
    parser.add_argument("--keep", type=Path, help="clone into this (new) folder and keep it")
    parser.add_argument("--fresh-interpreters", action="store_true",
                        help="every stage in its own interpreter (FACE_BIAS_PRELOAD=0), to compare with the warm one")
    args = parser.parse_args(argv)
    if args.fresh_interpreters:
        os.environ["FACE_BIAS_PRELOAD"] = "0"
    if args.keep:
        measure(args.keep, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        measure(Path(tmp) / "clone", args)


if __name__ == "__main__":
    main()
