"""End to end: `dvc repro` of the offline demo profile in a copy of the project.

This is the user's main job on synthetic faces: every stage runs offline, writes its outputs, and a
second `dvc repro` does nothing.
"""

import csv
import io
import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.e2e.runs import CHILDREN, DVC, ROOT, SAMPLE, commit, environment
from tests.e2e.runs import run as _run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_project(background_runs) -> Path:
    """A fresh copy of the project, profile set to demo, after one `dvc repro` (started with the session)."""
    run = background_runs["demo_project"]
    assert run.wait() == 0, f"dvc repro in {run.project} failed:\n{run.tail()}"
    return run.project


def test_dag_runs_from_download_to_split(demo_project):
    dag = _run(DVC + ["dag", "--md"], demo_project)
    for stage in ["download", "prepare", "crop", "split"]:
        assert stage in dag


def test_demo_writes_a_split_manifest_of_cropped_faces(demo_project):
    manifest = pd.read_parquet(demo_project / "data/processed/manifest.parquet")
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert manifest["dataset"].eq("synthetic").all()
    assert all((demo_project / path).is_file() for path in manifest["crop_path"].head(20))
    quality = json.loads((demo_project / "data/interim/synthetic/quality.json").read_text())
    assert quality["kept"] == len(pd.read_parquet(demo_project / "data/interim/synthetic/manifest.parquet"))


def test_second_repro_does_nothing(demo_project):
    output = _run(DVC + ["repro"], demo_project)
    assert "up to date" in output.lower()
    assert "Running stage" not in output


HEADLINE = "reports/metrics.json"


def _stdout(args: list[str], cwd: Path, **env: str) -> str:
    """A command's stdout alone (what `--json` prints), with `_run`'s environment and `env`."""
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=environment(cwd, **env), check=True)
    return done.stdout


def readme_views() -> list[list[str]]:
    """The README's `dvc exp show` comparison views, as argument lists."""
    lines = [line.split(" # ")[0] for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("dvc exp show ")]
    assert lines, "the README gives no `dvc exp show` view"
    return [shlex.split(line)[1:] for line in lines]


def assert_views_fit(project: Path, must_show: set[str]) -> None:
    """The README's views at 120 columns: every name in `must_show` (a headline key, a swept param, an
    experiment) printed whole in one of them, not cut to `…`."""
    shown = "".join(_stdout(DVC + [*view, "--no-pager"], project, COLUMNS="120") for view in readme_views())
    missing = {name for name in must_show if not re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", shown)}
    assert not missing, f"cut or absent at 120 columns: {sorted(missing)}\n{shown}"


def test_the_headline_is_the_one_dvc_metric_and_exp_show_holds_it(demo_project):
    headline = json.loads((demo_project / HEADLINE).read_text())
    leaves = {f"{key}.{inner}" for key, value in headline.items() if isinstance(value, dict) for inner in value}
    leaves |= {key for key, value in headline.items() if not isinstance(value, dict)}
    assert 8 <= len(leaves) <= 12, leaves
    assert {"worst_mae", "worst_acc", "gap_mae", "best_fix"} <= leaves
    [shown] = json.loads(_stdout(DVC + ["metrics", "show", "--json"], demo_project)).values()
    assert set(shown["data"]) == {HEADLINE}
    [workspace] = [row for row in json.loads(_stdout(DVC + ["exp", "show", "--json"], demo_project))
                   if row["rev"] == "workspace"]
    assert workspace["data"]["metrics"] == {HEADLINE: {"data": headline}}
    compared = {"ret_mae", "worst_mae", "gap_mae", "best_fix", "pub_acc", "ret_acc", "worst_acc"}
    assert compared <= set(headline)
    assert_views_fit(demo_project, compared)      # a fresh project: `main` has no results yet


def _du(*paths: Path) -> int:
    """Bytes on disk under `paths` together, each hard-linked file counted once (as `du` does)."""
    seen, total = set(), 0
    for path in paths:
        for file in [path] if path.is_file() else path.rglob("*"):
            info = file.lstat()
            if file.is_file() and not file.is_symlink() and (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def test_a_pushed_run_is_pulled_into_a_clean_clone_and_reruns_nothing(demo_project, tmp_path):
    """`dvc push` to a folder remote, a clean clone, `dvc pull`: nothing re-runs, the same report."""
    outputs = [demo_project / name for name in ("data", "models", "reports")]
    cache = demo_project / ".dvc" / "cache"
    stored, apart = _du(*outputs, cache), _du(*outputs) + _du(cache)
    print(f"demo disk use: outputs and cache together {stored / 2**20:.1f} MiB (counted apart {apart / 2**20:.1f} MiB)")
    crops = [path for path in (demo_project / "data/crops").rglob("*") if path.is_file()]
    # links into the cache; DVC leaves as a copy a file whose content the cache holds already (a header-only
    # rejects.csv, byte for byte another output's): a few bytes, never the faces
    copies = [path for path in crops if not (path.is_symlink() or path.stat().st_nlink > 1) and path.stat().st_size > 1024]
    assert crops and not copies, copies[:5]
    _run(DVC + ["remote", "add", "-d", "team", str(tmp_path / "remote")], demo_project)
    commit(demo_project, "demo run")
    _run(DVC + ["push"], demo_project)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(demo_project), str(clone)], tmp_path)
    _run(DVC + ["pull"], clone)
    assert "up to date" in _run(DVC + ["status"], clone)
    assert _stages_run(_run(DVC + ["repro"], clone)) == set()
    assert (clone / "reports/report.md").read_text() == (demo_project / "reports/report.md").read_text()
    assert (clone / HEADLINE).read_text() == (demo_project / HEADLINE).read_text()


def test_a_queued_sweep_runs_in_dvcs_copies_with_different_metrics(demo_project):
    """Two oversampling factors queued and run two at a time in DVC's temporary copies of the project:
    each re-runs only that experiment's stages (not the features pass, nor any other experiment), and
    its metrics differ."""
    commit(demo_project, "before the sweep")   # the run's dvc.lock committed: the copies start from it
    for factor in (1, 3):
        _run(DVC + ["exp", "run", "--queue", "-n", f"factor{factor}",
                    "-S", f"experiments.oversample_x2.oversample=[{{min_age: 60, factor: {factor}}}]"], demo_project)
    _run(DVC + ["queue", "start", "-j", "2"], demo_project)
    deadline = time.monotonic() + 600
    while re.search(r"\b(Queued|Running)\b", _run(DVC + ["queue", "status"], demo_project)):
        assert time.monotonic() < deadline, _run(DVC + ["queue", "status"], demo_project)
        time.sleep(5)
    status = _run(DVC + ["queue", "status"], demo_project)
    _run(DVC + ["queue", "stop"], demo_project)
    assert all(re.search(rf"\bfactor{factor}\s.*\bSuccess\b", status) for factor in (1, 3)), status
    for name in ("factor1", "factor3"):
        assert _stages_run(_run(DVC + ["queue", "logs", name], demo_project)) == {
            "params", "train@oversample_x2", "evaluate@oversample_x2", "report"}, name
    metrics = {name: json.loads(_stdout(["git", "show", f"{ref}:reports/experiments/oversample_x2/metrics.json"],
                                        demo_project)) for name, ref in _exp_refs(demo_project).items()}
    assert set(metrics) == {"factor1", "factor3"} and metrics["factor1"] != metrics["factor3"]
    header, *rows = csv.reader(io.StringIO(_stdout(DVC + ["exp", "show", "--only-changed", "--csv"], demo_project)))
    assert any(column.endswith("experiments.oversample_x2.oversample") for column in header), header
    assert {"factor1", "factor3"} <= {row[0] for row in rows}
    # Only what varies is shown: the swept param and each experiment (a metric only where it moves).
    assert_views_fit(demo_project, {"factor1", "factor3", "experiments.oversample_x2.oversample"})


def _exp_refs(project: Path) -> dict[str, str]:
    """{experiment name: its git ref} for the sweep's experiments."""
    listed = _stdout(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], project).split()
    return {ref.rsplit("/", 1)[1]: ref for ref in listed if ref.rsplit("/", 1)[1].startswith("factor")}


def test_demo_report_shows_the_planted_gap(demo_project):
    """The synthetic data under-represents black women and offsets their labels: the gap must show."""
    groups = pd.read_csv(demo_project / "reports/experiments/retrained/evaluation/synthetic/groups.csv")
    planted = groups.query("attribute == 'race*gender' and group == 'black*female'").iloc[0]
    others = groups.query("attribute == 'race*gender' and group != 'black*female'")
    assert planted["mae_ci_low"] > others["mae_ci_high"].max()
    assert (demo_project / "reports/report.md").read_text().count("black*female") >= 1


def test_demo_report_compares_backbones_and_splits(demo_project):
    report = (demo_project / "reports/report.md").read_text()
    assert "Backbones compared" in report and "vgg_face_narrow MAE" in report
    # the synthetic faces carry no identities and the demo clusters nothing: the report says the two
    # splits are the same instead of comparing them
    assert "Leakage: the study's split" in report and "naive split is identical to the grouped one" in report
    manifest = pd.read_parquet(demo_project / "data/processed/manifest.parquet")
    assert set(manifest["split_naive"]) == {"train", "val", "test"}
    naive = pd.read_parquet(demo_project / "reports/experiments/naive_split/predictions.parquet").set_index("id")["split"]
    assert naive.equals(manifest.set_index("id").loc[naive.index, "split_naive"].rename("split"))


def _stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_editing_a_profile_not_in_use_reruns_nothing(demo_project):
    params = yaml.safe_load((demo_project / "params.yaml").read_text())
    params["profiles"]["real-offline"]["train"]["epochs"] += 1
    params["backbone"]["fc_width"] += 1  # the full profile's value: the demo overrides it
    (demo_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _stages_run(_run(DVC + ["repro"], demo_project)) == {"params"}


def test_one_seed_gives_byte_identical_predictions_and_metrics_forked_or_fresh(demo_project):
    """The run forked its stages from a warm interpreter; each in a fresh one gives the same bytes."""
    experiment = demo_project / "reports/experiments/retrained"
    before = {name: (experiment / name).read_bytes() for name in ("predictions.parquet", "metrics.json")}
    _run(DVC + ["repro", "--force", "--single-item", "train@retrained", "evaluate@retrained"], demo_project,
         FACE_BIAS_PRELOAD="0")
    assert {name: (experiment / name).read_bytes() for name in before} == before


def test_stages_that_dvc_runs_start_warm(demo_project):
    """Past the first stages, each stage forks from an interpreter that has imported the libraries:
    its recorded start-up (its launcher's included) is a fraction of a fresh TensorFlow process's 5 s."""
    timing = demo_project / yaml.safe_load((demo_project / "params.yaml").read_text())["paths"]["timing"]
    startups = sorted(json.loads(path.read_text())["startup_s"] for path in timing.glob("evaluate@*.json"))
    startups += sorted(json.loads(path.read_text())["startup_s"] for path in timing.glob("train@*.json"))
    assert len(startups) >= 20
    assert np.median(startups) < 1.5, f"stages started in {startups} s"


def test_every_mitigation_is_weighed_in_the_report_and_reruns_alone(demo_project):
    report = (demo_project / "reports/report.md").read_text()
    for method in ("balanced", "group_dro", "adversarial", "last_layer"):
        assert f"**{method}** on synthetic, against plain: " in report
        rows = pd.read_csv(demo_project / f"reports/experiments/{method}/evaluation/synthetic/worst_groups.csv")
        assert rows["change_ci_low"].notna().all() and set(rows["worst_group"].dropna()) != set()
    assert "What each embedding holds: linear probes" in report and "a linear probe reads race at" in report
    assert (demo_project / "reports/figures/mitigation.png").exists()
    params = yaml.safe_load((demo_project / "params.yaml").read_text())
    params["experiments"]["group_dro"]["mitigation"]["step_size"] = 0.05
    (demo_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = _run(DVC + ["repro"], demo_project)
    ran = {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}
    assert ran == {"params", "train@group_dro", "evaluate@group_dro", "report"}


@pytest.fixture(scope="module")
def real_offline_run(background_runs):
    """The real-offline `dvc repro` on a sample of the real photos, started in the background with the
    session (tests/e2e/runs.py) where its test is selected and its inputs are at hand."""
    return background_runs["real_offline_run"]


@pytest.mark.shared
def test_real_offline_profile_runs_end_to_end_on_real_faces(real_offline_run):
    assert real_offline_run.wait() == 0, f"dvc repro failed:\n{real_offline_run.tail()}"
    project = real_offline_run.project

    meta = json.loads((project / "data/features/meta.json").read_text())
    assert meta["shape"] == [2 * SAMPLE + CHILDREN, 1024] and meta["spec"]["name"] == "faceres"
    assert meta["published_shape"] == [2 * SAMPLE + CHILDREN, 103] and "published_inputs_shape" not in meta
    summary = json.loads((project / "models/retrained/live/metrics.json").read_text())
    assert summary["init"] == "published" and summary["method"] == "plain"   # the study's: fine-tuned from them
    assert json.loads((project / "data/identity/status.json").read_text())["computed"]
    published = json.loads((project / "reports/experiments/published/metrics.json").read_text())
    assert 5 < published["utkface"]["mae"] < 20 and published["utkface"]["gender_accuracy"] > 0.6
    assert "utkface_children" in published and "mae" not in published["fairface"]   # FairFace: bands only
    split = json.loads((project / "data/processed/split.json").read_text())
    assert set(split["leakage"]) == {"utkface", "utkface_children", "fairface"}
    assert all(entry["grouped"]["test_faces"] > 0 for entry in split["leakage"].values())
    # no model trains on the children or on FairFace: every row of theirs is a test face
    assert split["datasets"]["fairface"]["rows"] == {"train": 0, "val": 0, "test": SAMPLE}
    assert split["datasets"]["utkface_children"]["rows"]["test"] == CHILDREN
    assert split["datasets"]["utkface"]["rows"]["train"] > 0
    # 120 training faces are too few for new heads to learn age (on the full sample's 2,462 the faithful
    # fine-tune reaches MAE 8.81 against the published 11.71), not gender: dlib's heads (compare stage,
    # on the identity stage's pass) and FaceRes' fine-tuned layers must.
    dlib = json.loads((project / "reports/compare/dlib_resnet/evaluation/utkface/metrics.json").read_text())
    assert dlib["gender_accuracy"] > 0.8
    metrics = json.loads((project / "reports/experiments/retrained/metrics.json").read_text())
    assert metrics["utkface"]["gender_accuracy"] > 0.65
    test = pd.read_parquet(project / "reports/experiments/retrained/predictions.parquet").query(
        "dataset == 'utkface' and split == 'test'")
    assert np.isfinite(test["age_pred"]).all() and len(test) > 40
    assert 0 < metrics["fairface"]["age_band_accuracy"] < 1
    report = (project / "reports/report.md").read_text()
    assert "dlib_resnet MAE" in report and "faceres MAE" in report and "look-alike" in report
    assert "yunet" in report and "haar" in report and "fairface: ssd" in report and "cropped already" in report
    audited = json.loads((project / "reports/audit_models/wide_resnet_imdb/metrics.json").read_text())
    assert audited["utkface"]["n"] == published["utkface"]["n"] and audited["utkface"]["in_sample"] == "no"
    assert "## Published models side by side" in report and "| wide_resnet_imdb | no |" in report
    assert "| faceres | no |" in report and "| gear (in-sample contrast) | yes |" in report
    audits = sorted(path.name for path in (project / "reports/audit_models").iterdir() if path.is_dir())
    assert audits == ["dlib_cydral", "face_api", "faceres", "gear", "levi_hassner", "wide_resnet_imdb"]
    # one answer per face: FaceRes' audit rows are the `published` experiment's, read from the features pass
    faceres = pd.read_parquet(project / "reports/audit_models/faceres/predictions.parquet").set_index("id")
    ours = pd.read_parquet(project / "reports/experiments/published/predictions.parquet").set_index("id")
    ours = ours.loc[faceres.index]
    assert np.abs(faceres["age_pred"] - ours["age_pred"]).max() <= 1e-4
    assert (faceres["gender_pred"] == ours["gender_pred"]).all()
