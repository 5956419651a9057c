"""Each experiment against its twin: the pairs params name, the saved heads' check, and a
real-offline-shaped report on toy predictions with no template text left in it."""

import json
import re

import keras
import pytest
import yaml

from stages import evaluate as evaluate_stage
from stages import report as report_stage
from stages.lib.heads.model import build_head
from stages.lib.heads.training import FittedHeads, heads_signature
from stages.lib.reporting.twins import compared_pairs, saved_mismatches, signature_differences
from tests.reporting.test_report import write_params, write_predictions
from tests.reporting.toy_experiments import params

TEMPLATE = re.compile(r"\{[A-Za-z_][A-Za-z_0-9]*\}")   # an unfilled format field: {REFERENCE}, {name}


def test_mitigations_are_compared_with_their_named_twin_and_the_rest_with_retrained():
    real = params("real-offline")
    pairs = compared_pairs(real, list(real.experiments))
    assert {pairs[name] for name in ("balanced", "group_dro", "adversarial", "last_layer")} == {"plain"}
    assert pairs["oversample_x2"] == pairs["plain"] == pairs["published"] == "retrained" and "retrained" not in pairs


def _signature(width: int, init: str = "backbone") -> dict:
    heads = {task: build_head(32, width, classes, 0.5, name=task, seed=1) for task, classes in (("age", 101), ("gender", 2))}
    return heads_signature(FittedHeads(heads), init, params("demo"), "grouped")


def test_saved_heads_of_another_shape_or_start_are_not_twins():
    keras.utils.set_random_seed(0)
    same, wider = _signature(16), _signature(24)
    assert signature_differences(same, _signature(16)) == []
    assert [d.split(" ")[0] for d in signature_differences(same, wider)] == ["layers"]
    started = signature_differences(same, _signature(16, init="published"))
    assert started == ["start 'backbone' vs 'published'"]
    naive = {**same, "split": "naive"}
    assert signature_differences(naive, same, treatments=("split",)) == [] and signature_differences(naive, same)


SIGNATURE = {"start": "random", "reads": "features", "split": "grouped", "layers": {"age": [[32, 8]]}}


def _save_signature(folder, name: str, start: str = "random") -> None:
    (folder / "models" / name).mkdir(parents=True)
    (folder / "models" / name / "mitigation.json").write_text(
        json.dumps({"method": name, "heads": {**SIGNATURE, "start": start}}))


def test_a_pair_whose_saved_heads_differ_is_named_with_what_differs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, start in (("plain", "random"), ("balanced", "random"), ("group_dro", "published")):
        _save_signature(tmp_path, name, start)
    real = params("real-offline")
    found = saved_mismatches(real, {"balanced": "plain", "group_dro": "plain", "adversarial": "plain"})
    assert found == {"group_dro": ["start 'published' vs 'random'"]}   # adversarial: not trained, not judged


@pytest.fixture()
def real_offline_project(tmp_path, monkeypatch):
    """Toy predictions under the real-offline profile's experiments (its roles: UTKFace, FairFace's bands),
    each evaluated; balanced saved as plain's twin."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["profile"] = "real-offline"
    raw["profiles"]["real-offline"]["roles"] = {"pretrain": "fairface", "finetune": "utkface",
                                                "evaluate": ["utkface", "fairface"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    for seed, name in enumerate(("published", "retrained", "plain", "balanced")):
        write_predictions(tmp_path, name, noise=9 - seed, seed=seed, fairface=True)
        evaluate_stage.main([name])
        _save_signature(tmp_path, name)
    return tmp_path


def test_the_real_offline_report_names_each_twin_draws_the_forest_and_leaves_no_template(real_offline_project):
    report_stage.main([])
    text = (real_offline_project / "reports" / "report.md").read_text()
    assert TEMPLATE.findall(text) == []
    assert "Twins: balanced against **plain**" in text and "Not twins as saved" not in text
    assert "**balanced** on utkface, against plain: " in text and "**plain** on utkface, against retrained: " in text
    assert (real_offline_project / "reports" / "figures" / "mitigation_forest.png").exists()
    assert "Bonferroni-adjusted intervals" in text
