"""Stages that only read tables never pay TensorFlow's import (5-6 s per process on 2 cores)."""

from __future__ import annotations

import ast
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
    Both describe the backbone, which must not build it. The params stage's set-up check imports
    TensorFlow once per install (the first run), then remembers it in the user's cache."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "profile": "demo"}, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FACE_BIAS_CACHE": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-m", "stages.params"], cwd=tmp_path, capture_output=True, text=True,
                           env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    code = ("import sys\nfrom stages import download, params\n"
            "assert params.main([]) == 0 and download.main(['--no-progress']) == 0\n"
            "print('heavy:' + ','.join(sorted(name for name in ('tensorflow', 'keras') if name in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "heavy:"
    assert (tmp_path / "data" / "params.yaml").is_file()  # the stages did run


# ----- every stage trains heads through the heads registry ---------------------------------------------

REGISTRY_ENTRY = "fit_experiment"   # stages/lib/heads/methods.py
NOT_HEADS = {"fit_probe"}           # a linear probe of the features (heads/probe.py), not the age/gender heads


def head_training_functions() -> set[str]:
    """The heads room's functions that fit something: every top-level `fit`, `fit_…`, `train_…` of stages/lib/heads."""
    names = set()
    for module in (ROOT / "stages" / "lib" / "heads").glob("*.py"):
        names |= {node.name for node in ast.parse(module.read_text()).body
                  if isinstance(node, ast.FunctionDef) and (node.name == "fit" or node.name.startswith(("fit_", "train_")))}
    return names - {REGISTRY_ENTRY} - NOT_HEADS


def calls_around_the_registry(source: str, training: set[str]) -> list[str]:
    """`name (line n)` of each call in `source` to one of `training`, by name or as an attribute."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in training:
                calls.append((node.lineno, name))
    return [f"{name} (line {line})" for line, name in sorted(calls)]


def test_no_stage_trains_heads_except_through_the_registry():
    training = head_training_functions()
    assert {"train_heads", "fit_head", "fit_loop", "fit"} <= training
    offences = {stage.name: calls for stage in sorted((ROOT / "stages").glob("*.py"))
                if (calls := calls_around_the_registry(stage.read_text(), training))}
    assert not offences, f"stages that train heads around heads.methods.{REGISTRY_ENTRY}: {offences}"


def test_the_registry_check_sees_a_stage_training_around_it():
    source = ("from stages.lib.heads import balanced\nfrom stages.lib.heads.plain import train_heads\n"
              "models = train_heads(data, 'random', plan).heads\nfitted = balanced.fit(data, experiment)\n")
    assert calls_around_the_registry(source, head_training_functions()) == ["train_heads (line 3)", "fit (line 4)"]
