"""Incremental re-runs: what `dvc repro` costs after changing an oversampling factor.

    python bench/bench_incremental.py [--profile demo] [--factor 4]

In a fresh copy of the project (tracked files only, profile demo by default): one full `dvc repro`,
timed; then experiments.oversample_x2's factor is changed and `dvc repro` is timed again. Prints both
times, their ratio, the stages each run executed, and whether the features stage was skipped (the
expensive backbone pass must not re-run for a sampling change). Same machine, same run, so the ratio
is what to compare across machines.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def copy_project(target: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout.split()
    for name in listed:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)


def run(args: list[str], cwd: Path) -> tuple[float, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(cwd)}
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started, done.stdout + done.stderr


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def set_params(project: Path, profile: str, factor: int | None = None) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["profile"] = profile
    if factor is not None:
        params["experiments"]["oversample_x2"]["oversample"][0]["factor"] = factor
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--factor", type=int, default=4, help="the new factor of experiments.oversample_x2")
    args = parser.parse_args(argv)
    dvc = [sys.executable, "-m", "dvc"]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        copy_project(project)
        set_params(project, args.profile)
        for command in (["git", "init", "-q"], ["git", "add", "-A"],
                        ["git", "-c", "user.email=b@localhost", "-c", "user.name=bench", "commit", "-qm", "bench"]):
            run(command, project)
        full_seconds, full_output = run(dvc + ["repro"], project)
        set_params(project, args.profile, args.factor)
        again_seconds, again_output = run(dvc + ["repro"], project)
    rerun = stages_run(again_output)
    print(f"profile {args.profile}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"full dvc repro:                        {full_seconds:7.1f} s  ({len(stages_run(full_output))} stages)")
    print(f"after oversample_x2 factor -> {args.factor}:       {again_seconds:7.1f} s  "
          f"ratio {again_seconds / full_seconds:.2f} of the full run")
    print(f"stages re-run: {', '.join(rerun)}")
    print(f"features stage skipped: {'features' not in rerun}")


if __name__ == "__main__":
    main()
