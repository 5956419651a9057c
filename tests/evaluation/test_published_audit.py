"""The audit of published models (stage audit_models) on tiny synthetic crops, with fake registered
models: the face box inside a crop, an experiment's evaluation per test set, band models judged by
bands (never an MAE), in-sample flags carried, the report's side-by-side section, and unknown names."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from stages import audit_models as audit_stage
from stages import params as params_stage
from stages.lib.backbones import cards, published
from stages.lib.core.labels import GENDERS, RACES
from stages.lib.core.params import load_params
from stages.lib.evaluation.band_models import true_band
from stages.lib.evaluation.disaggregation import GROUP_COLUMNS
from stages.lib.evaluation.published_audit import face_boxes
from stages.lib.reporting.markdown import Markdown
from stages.lib.reporting.published_models import published_models_section
from stages.lib.reporting.skin_section import skin_study
from tests.evaluation.frames import ADIENCE

ROOT = Path(__file__).resolve().parents[2]
SIDE, MARGIN = 45, 0.4     # the face inside a crop: the central 25 px


class FakeModel:
    """Reads the face box only: its mean blue value is the age, red says female. Outside the box the
    crop holds other values, so a wrong box gives wrong answers. `flip` swaps the gender of black women
    (a planted bias); `bands` makes it a band model."""

    def __init__(self, card, flip: bool):
        self.card, self.flip = card, flip

    def predict(self, photos, boxes):
        faces = [p[int(y):int(y + h), int(x):int(x + w)].reshape(-1, 3).mean(axis=0)
                 for p, (x, y, w, h) in zip(photos, boxes)]
        age = np.array([f[0] for f in faces])
        p_female = np.array([f[2] / 255 for f in faces])
        if self.flip:
            p_female = np.where(np.array([f[1] for f in faces]) > 100, 1 - p_female, p_female)
        if self.card.age_bands is None:
            return cards.FacePredictions(age=age, band_probs=None, p_female=p_female)
        probs = np.eye(len(ADIENCE))[true_band(age, ADIENCE)]
        return cards.FacePredictions(age=np.full(len(age), np.nan), band_probs=probs, p_female=p_female)


def fake_card(name: str, bands=None) -> cards.ModelCard:
    return cards.ModelCard(name=name, family="fake", source="tests", trained_on="nothing",
                               in_sample={"utkface": "partly"}, age_bands=bands, weights=())


FAKES = {"fake_years": (None, False), "fake_biased": (None, True), "fake_bands": (ADIENCE, False)}


def register_fakes() -> list[str]:
    """Two year models (one with the planted bias) and a band model, registered for the tests only."""
    for name, (bands, flip) in FAKES.items():
        card = fake_card(name, bands)
        published.MODELS[card.name] = (card, lambda _, card=card, flip=flip: FakeModel(card, flip))
    return list(FAKES)


def unregister_fakes() -> None:
    for name in FAKES:
        published.MODELS.pop(name, None)


@pytest.fixture()
def fakes():
    yield register_fakes()
    unregister_fakes()


def crop(age: int, gender: str, race: str, ready: bool) -> np.ndarray:
    """A crop whose face box (central square, or the whole crop when `ready`) holds the labels."""
    image = np.full((SIDE, SIDE, 3), 200, np.uint8)
    low, high = (0, SIDE) if ready else (10, 35)
    image[low:high, low:high] = (age, 200 if race == "black" else 0, 255 if gender == "female" else 0)
    return image


def make_project(folder: Path) -> None:
    """In `folder`: params.yaml (utkface and fairface evaluated, a small bootstrap) and a split manifest
    of crops: utkface crops cut with the margin, fairface ready crops labelled with age bands."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["roles"] = {"pretrain": "utkface", "finetune": "utkface", "evaluate": ["utkface", "fairface"]}
    raw["evaluate"] = {"bootstrap": 60, "confidence": 0.95, "min_group_size": 5}
    raw["audit_models"] = list(FAKES)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    rng = np.random.default_rng(3)
    rows = []
    for dataset, n in (("utkface", 160), ("fairface", 80)):
        for i in range(n):
            age, gender, race = int(rng.integers(1, 90)), GENDERS[i % 2], RACES[(i // 2) % len(RACES)]
            path = Path("data/crops") / dataset / f"{i}.png"
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            banded = dataset == "fairface"
            if banded:
                low = age // 10 * 10
                age, band = low + 4, f"{low}-{low + 9}"
            cv2.imwrite(str(folder / path), crop(age, gender, race, ready=banded))
            rows.append({"id": f"{dataset}/{i}", "dataset": dataset, "path": str(path), "age": age, "gender": gender,
                         "race": race, "identity": None, "box": None, "cropped": banded, "source_meta": "",
                         "crop_path": str(path), "detector": "precropped" if banded else "dataset_box",
                         "split": "train" if i % 4 == 0 else "test", "age_band_source": band if banded else None})
    manifest = folder / "data/processed/manifest.parquet"
    manifest.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(manifest)


@pytest.fixture()
def project(tmp_path, monkeypatch):
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A project where the stage audited the three fake models once (shared by the tests that read it)."""
    folder = tmp_path_factory.mktemp("audited")
    make_project(folder)
    register_fakes()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            assert audit_stage.main([]) == 0
    finally:
        unregister_fakes()
    return folder


def set_audit_models(names) -> None:
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["audit_models"] = list(names)
    Path("params.yaml").write_text(yaml.safe_dump(raw))


def test_the_face_box_is_the_crops_central_square_or_the_whole_ready_crop():
    boxes = face_boxes([(45, 45), (100, 80)], [0.4, np.nan])
    np.testing.assert_allclose(boxes, [[10, 10, 25, 25], [0, 0, 80, 100]])


def test_a_fake_model_is_audited_like_an_experiment_with_its_in_sample_flags(audited, monkeypatch):
    monkeypatch.chdir(audited)
    params = load_params()
    folder = params.paths.audit / "fake_biased"
    headlines = json.loads((folder / "metrics.json").read_text())
    table = pd.read_parquet(folder / "predictions.parquet")
    assert set(table["split"]) == {"test"} and len(table) == 180        # the test faces of both sets
    utk = table[table["dataset"] == "utkface"]
    manifest = pd.read_parquet("data/processed/manifest.parquet").set_index("id")
    np.testing.assert_allclose(utk["age_pred"], manifest.loc[utk["id"], "age"], atol=0.01)   # the right box
    assert dict(zip(table["dataset"], table["in_sample"])) == {"utkface": "partly", "fairface": "unknown"}
    assert json.loads((folder / "card.json").read_text())["test_sets"] == {"utkface": "partly", "fairface": "unknown"}
    assert headlines["utkface"]["in_sample"] == "partly" and headlines["fairface"]["in_sample"] == "unknown"
    groups = pd.read_csv(folder / "evaluation" / "utkface" / "groups.csv")
    assert list(groups.columns) == GROUP_COLUMNS
    black_women = groups.query("attribute == 'race*gender' and group == 'black*female'").iloc[0]
    assert black_women["gender_accuracy"] == 0 and headlines["utkface"]["mae"] == pytest.approx(0, abs=0.01)
    worst = pd.read_csv(folder / "evaluation" / "utkface" / "worst_groups.csv").set_index("statistic")
    assert worst.loc["worst_group_accuracy", "worst_group"] == "black*female"
    assert "age_band_accuracy" in json.loads((folder / "evaluation" / "fairface" / "metrics.json").read_text())


def test_a_band_model_gets_band_accuracies_and_never_an_mae(audited, monkeypatch):
    monkeypatch.chdir(audited)
    folder = load_params().paths.audit / "fake_bands"
    headlines = json.loads((folder / "metrics.json").read_text())
    for dataset in ("utkface", "fairface"):
        evaluation = folder / "evaluation" / dataset
        assert not (evaluation / "groups.csv").exists()
        groups = pd.read_csv(evaluation / "band_groups.csv")
        assert not [c for c in groups.columns if "mae" in c]
        metrics = json.loads((evaluation / "metrics.json").read_text())
        assert "mae" not in json.dumps(metrics) and "mae" not in json.dumps(headlines[dataset])
        assert metrics["band_accuracy"] == 1.0 and metrics["one_off_accuracy"] == 1.0   # it predicts the true band
        assert not pd.read_csv(evaluation / "worst_groups.csv")["statistic"].str.contains("mae").any()
    table = pd.read_parquet(folder / "predictions.parquet")
    assert table["age_pred"].isna().all() and set(table["age_band_pred"]) <= {f"{a}-{b}" for a, b in ADIENCE}


def test_the_report_sets_the_models_side_by_side_from_their_outputs(audited, monkeypatch):
    monkeypatch.chdir(audited)
    params = load_params()
    md = Markdown(params.paths.reports)
    published_models_section(md, params)
    text = md.text()
    assert "## Published models side by side" in text and "### On utkface" in text and "### On fairface" in text
    assert "nearest band" in text                                           # the band rule is said
    band_row = next(line for line in text.splitlines() if line.startswith("| fake_bands |"))
    assert "band acc." in band_row and "MAE" not in band_row
    assert "fake_biased − fake_years" in text or "fake_years − fake_biased" in text
    biased = next(line for line in text.splitlines() if line.startswith("- **fake_biased** on utkface"))
    assert "black*female" in biased and "gender accuracy lower than fake_years (in-sample: partly)'s" in biased
    assert "gender accuracy: no difference from fake_bands's shown" not in biased
    for name in ("published_gender_by_race_gender.png", "published_overall_vs_worst.png"):
        assert (params.paths.figures / name).stat().st_size > 10_000


def test_an_unknown_model_name_is_one_line_naming_it(project, fakes, capsys):
    set_audit_models(["fake_years", "no_such_model"])
    assert params_stage.main([]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "audit_models: no_such_model not registered" in error and "wide_resnet_imdb" in error
    assert audit_stage.main([]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "no_such_model" in error


def test_an_empty_list_audits_nothing_and_leaves_an_empty_folder(project):
    set_audit_models([])
    assert audit_stage.main([]) == 0
    assert list(load_params().paths.audit.iterdir()) == []


def test_each_audited_model_gets_its_skin_analysis_where_the_faces_are_measured(project, fakes):
    set_audit_models(["fake_years"])
    manifest = pd.read_parquet("data/processed/manifest.parquet")
    rng = np.random.default_rng(5)
    measured = manifest[manifest["dataset"] == "utkface"]
    folder = Path("data/measurements")
    folder.mkdir(parents=True)
    pd.DataFrame({"id": measured["id"], "skin_lightness": rng.uniform(20, 80, len(measured)),
                  "skin_hue": rng.uniform(30, 70, len(measured))}).to_parquet(folder / "measurements.parquet")
    assert audit_stage.main([]) == 0
    evaluation = load_params().paths.audit / "fake_years" / "evaluation"
    written = {path.name for path in (evaluation / "utkface" / "skin").iterdir()}
    assert {"skin_groups.csv", "slopes.csv", "gender_auc.csv"} <= written
    assert not (evaluation / "fairface" / "skin").exists()      # no face of it measured
    study = skin_study(load_params())
    assert [(run.model, run.dataset) for run in study.runs] == [("fake_years", "utkface")]
