"""Stages that only read tables never pay TensorFlow's import (5-6 s per process on 2 cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# split reads a finished features pass, identity makes none unless clusters use dlib (then its pass imports it)
TABLE_STAGES = ["evaluate", "report", "params", "download", "prepare", "split", "identity", "measure"]


@pytest.mark.parametrize("stage", TABLE_STAGES)
def test_table_stage_imports_no_tensorflow(stage):
    code = (f"import sys, stages.{stage}\n"
            "heavy = sorted(name for name in ('tensorflow', 'keras') if name in sys.modules)\n"
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"stages.{stage} imports {done.stdout.strip()}"


def test_the_check_sees_a_tensorflow_import():
    """The same probe on a stage that does need TensorFlow (features) finds it, so the check can fail."""
    code = "import sys, stages.features\nprint('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"


def test_params_and_download_run_without_tensorflow(tmp_path):
    """Not only their imports: running them (the demo's params; nothing to fetch) loads no TensorFlow.
    Both describe the backbone, which must not build it."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "profile": "demo"}, sort_keys=False))
    code = ("import sys\nfrom stages import download, params\n"
            "assert params.main([]) == 0 and download.main(['--no-progress']) == 0\n"
            "print('heavy:' + ','.join(sorted(name for name in ('tensorflow', 'keras') if name in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "heavy:"
    assert (tmp_path / "data" / "params.yaml").is_file()  # the stages did run
