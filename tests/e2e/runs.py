"""The end-to-end tests' two long `dvc repro` runs, each in a fresh git-committed copy of the project:
the demo profile, and the real-offline profile on a sample of the real photos in ../shared.

Both start in the background when the test session starts (tests/conftest.py's `background_runs`, only
where a test that needs one is selected) and go on while the unit tests run, which pytest runs first;
the end-to-end tests then wait for theirs. A run still going when the session ends is stopped.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.published_weights import DETECTOR_KEYS, MODELS, fetched

ROOT = Path(__file__).resolve().parents[2]
DVC = [sys.executable, "-m", "dvc"]
WAIT_S = 1800  # seconds a test waits for its run, on top of the head start the unit tests give it
# The real-offline run yields the cores: nothing waits on it until the very end, while the demo's follow-up
# tests wait on the demo and on the unit tests before them, so it fills the cores they leave idle.
REAL_NICENESS = 10

SHARED = ROOT.parent / "shared" / "datasets"
SAMPLE = 200  # faces per dataset: enough for every stage, small enough for CI (dlib: ~15 faces/s)
CHILDREN = 30  # UTKFace faces under 17 besides: the profile's `utkface_children`, evaluated apart
# Every stage of the profile runs, with the experiments each role of the report needs (the published model,
# the study's retrained and oversampled ones, the random-start control and the balanced heads the probe
# reads, with its twin `plain`); the other methods cost ~3 minutes here and run in the demo's end-to-end test.
REAL_EXPERIMENTS = {"published", "retrained", "oversample_x2", "retrained_random", "plain", "balanced"}


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()
    return [name for name in listed if (ROOT / name).is_file()]


def environment(project: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a command in `project`. dvc.yaml's commands call `python`: make it
    this interpreter, whatever the caller's PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(project), **extra}


def run(args: list[str], cwd: Path, **extra: str) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=environment(cwd, **extra))
    if done.returncode:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def copy_project(project: Path) -> Path:
    """The repository's files (tracked, or new and not ignored) copied to `project`."""
    for name in tracked_files():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    return project


def commit(project: Path, message: str) -> None:
    """Everything in `project` committed (an empty commit where nothing changed)."""
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.email=ci@localhost", "-c", "user.name=CI", "commit", "-qm", message, "--allow-empty"],
        project)


def demo_project(project: Path) -> Path:
    """A fresh copy of the project under `project`, profile set to demo, committed."""
    copy_project(project)
    run(["git", "init", "-q"], project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["profile"] = "demo"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit(project, "demo")
    return project


def sample_folder(target: Path) -> tuple[Path, Path]:
    """Links to SAMPLE UTKFace files aged 17+ and CHILDREN under 17 (one folder: the profile's utkface
    and utkface_children read it by age), and SAMPLE FairFace rows (with their label file) under target."""
    utkface = target / "utkface"
    utkface.mkdir(parents=True)
    files = sorted((SHARED / "utkface-aligned-sample").glob("*.jpg"))
    age = lambda path: int(path.name.split("_")[0])  # noqa: E731
    adults, children = [f for f in files if age(f) >= 17], [f for f in files if age(f) < 17]
    for path in adults[:: len(adults) // SAMPLE][:SAMPLE] + children[:: len(children) // CHILDREN][:CHILDREN]:
        (utkface / path.name).symlink_to(path)
    fairface = target / "fairface"
    (fairface / "val").mkdir(parents=True)
    labels = pd.read_csv(SHARED / "fairface-sample" / "fairface_label_val.csv").iloc[:SAMPLE]
    labels.to_csv(fairface / "fairface_label_val.csv", index=False)
    for name in labels["file"]:
        (fairface / name).symlink_to(SHARED / "fairface-sample" / name)
    return utkface, fairface


def real_offline_project(folder: Path, wide_resnet_file: Path, models_folder: Path) -> Path:
    """A copy of the project under `folder`, profile real-offline on a sample of the shared photos, its
    weights linked in as if put there by hand (checked, not fetched), committed."""
    project = copy_project(folder / "project")
    utkface, fairface = sample_folder(folder / "photos")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["profile"] = "real-offline"
    profile = params["profiles"]["real-offline"]
    profile["datasets"]["utkface"]["sources"] = [{"path": str(utkface)}]
    profile["datasets"]["utkface_children"]["sources"] = [{"path": str(utkface)}]
    profile["datasets"]["fairface"]["sources"] = [{"path": str(fairface)}]
    profile["weights"]["yunet"]["path"] = str(ROOT.parent / "shared" / "models" / "face_detection_yunet.onnx")
    profile["evaluate"] = {"bootstrap": 100}
    for name in set(params["experiments"]) - REAL_EXPERIMENTS:   # every other method runs in the demo's e2e
        del params["experiments"][name]
        profile["experiments"].pop(name, None)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], project)
    commit(project, "real")
    weights = project / "data/raw/weights/wide_resnet_imdb.hdf5"
    weights.parent.mkdir(parents=True)
    weights.symlink_to(wide_resnet_file)
    for name in ("ssd_face.pb", "ssd_face_config.pbtxt"):  # the SSD detector's files, likewise
        (weights.parent / name).symlink_to(models_folder / name)
    return project


class BackgroundRun:
    """`dvc repro` going on in `project`, its output in `log`; or, where it could not start, why: `skipped`
    (its test skips) or `failed` (its test fails)."""

    def __init__(self, project: Path | None = None, log: Path | None = None, *, niceness: int = 0,
                 skipped: str = "", failed: str = "") -> None:
        self.project, self.log, self.skipped, self.failed = project, log, skipped, failed
        self.process = None
        if project is not None:
            with log.open("w") as out:   # its own process group, so that stopping it stops its stages too
                self.process = subprocess.Popen(DVC + ["repro"], cwd=project, stdout=out, stderr=subprocess.STDOUT,
                                                env=environment(project), start_new_session=True)
            if niceness:   # added to this process's; the stages it starts inherit it
                with contextlib.suppress(ProcessLookupError):   # ended already
                    os.setpriority(os.PRIO_PROCESS, self.process.pid, os.getpriority(os.PRIO_PROCESS, 0) + niceness)

    def wait(self, timeout: float = WAIT_S) -> int:
        """The run's exit status once it ends; the test skips or fails, saying why, where it never started,
        and fails, with the log's tail, where it is still going after `timeout` seconds."""
        if self.skipped:
            pytest.skip(self.skipped)
        if self.failed:
            pytest.fail(f"dvc repro could not start:\n{self.failed}", pytrace=False)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
        pytest.fail(f"dvc repro in {self.project} still going after {timeout} s more:\n{self.tail()}", pytrace=False)

    def tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_demo(request, tmp_path_factory) -> BackgroundRun:
    project = demo_project(tmp_path_factory.mktemp("project"))
    return BackgroundRun(project, project.parent / f"{project.name}.repro.log")


def start_real_offline(request, tmp_path_factory) -> BackgroundRun:
    """Where its photos, the dlib extra and the published weights are at hand; else why not."""
    if not (SHARED / "fairface-sample").is_dir() or not (SHARED / "utkface-aligned-sample").is_dir():
        return BackgroundRun(skipped=f"the real photos are not in {SHARED}")
    try:
        import dlib  # noqa: F401 (the identity stage needs it)
        weights = [request.getfixturevalue("wide_resnet_weights"), fetched(MODELS, DETECTOR_KEYS)]
    except ImportError:
        return BackgroundRun(skipped='the dlib extra is not installed: pip install -e ".[dlib]"')
    except pytest.skip.Exception as skipped:
        return BackgroundRun(skipped=str(skipped))
    folder = tmp_path_factory.mktemp("real_offline")
    return BackgroundRun(real_offline_project(folder, *weights), folder / "repro.log", niceness=REAL_NICENESS)


# {the fixture the tests that need a run ask for: how to start that run}
STARTERS = {"demo_project": start_demo, "real_offline_run": start_real_offline}


def start(name: str, request, tmp_path_factory) -> BackgroundRun:
    """The run `name` started, or why it did not: a fault while preparing it fails its tests, not the session."""
    try:
        return STARTERS[name](request, tmp_path_factory)
    except Exception:  # noqa: BLE001 (reported by the run's own tests)
        return BackgroundRun(failed=traceback.format_exc())
