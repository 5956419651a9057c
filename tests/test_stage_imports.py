"""Stages that only read tables never pay TensorFlow's import (5-6 s per process on 2 cores)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE_STAGES = ["evaluate", "report", "params", "download", "prepare"]


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
