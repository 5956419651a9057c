"""Train/val/test assignment: identity-disjoint, stratified by age band, seeded, sane on tiny inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.labels import age_band
from stages.lib.splitting.split import SPLITS, SplitPlan, assign_splits, split_manifest, split_summary

FRACTIONS = {"train": 0.6, "val": 0.1, "test": 0.3}
EDGES = [0, 16, 31, 46, 61]


def _people(n_identities: int, n_anonymous: int, seed: int = 0, dataset: str = "d") -> pd.DataFrame:
    """Rows of `n_identities` people (1..30 photos each, ages near a personal mean) and anonymous rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for person in range(n_identities):
        mean_age = rng.integers(5, 90)
        for _ in range(rng.integers(1, 31)):
            rows.append({"dataset": dataset, "identity": f"p{person}", "age": int(np.clip(mean_age + rng.integers(-4, 5), 0, 100))})
    for _ in range(n_anonymous):
        rows.append({"dataset": dataset, "identity": None, "age": int(rng.integers(0, 100))})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _anonymous(n: int, seed: int = 0) -> pd.DataFrame:
    ages = np.random.default_rng(seed).integers(0, 100, n)
    return pd.DataFrame({"dataset": "d", "identity": None, "age": ages})


def test_no_identity_crosses_splits():
    frame = _people(300, 500)
    split = assign_splits(frame, SplitPlan(FRACTIONS, EDGES, seed=1))
    known = frame["identity"].notna()
    assert (split[known].groupby(frame.loc[known, "identity"]).nunique() == 1).all()
    assert set(split) == set(SPLITS)


def test_fractions_are_close_to_the_target_overall_and_in_every_band():
    frame = _anonymous(5000)
    split = assign_splits(frame, SplitPlan(FRACTIONS, EDGES, seed=3))
    shares = split.value_counts(normalize=True)
    for name, target in FRACTIONS.items():
        assert shares[name] == pytest.approx(target, abs=0.01)
    bands = pd.Series(age_band(frame["age"], EDGES))
    for band in bands.cat.categories:
        in_band = split[bands == band].value_counts(normalize=True)
        for name, target in FRACTIONS.items():
            assert in_band[name] == pytest.approx(target, abs=0.01), (band, name)


def test_stratification_holds_with_identities():
    frame = _people(800, 0, seed=5)
    split = assign_splits(frame, SplitPlan(FRACTIONS, EDGES, seed=5))
    bands = pd.Series(age_band(frame["age"], EDGES))
    for band in bands.cat.categories:
        in_band = split[bands == band].value_counts(normalize=True)
        assert in_band["train"] == pytest.approx(0.6, abs=0.05), band
        assert in_band["test"] == pytest.approx(0.3, abs=0.05), band


def test_the_same_seed_gives_the_same_split_and_another_seed_another():
    frame = _people(100, 200)
    first = assign_splits(frame, SplitPlan(FRACTIONS, EDGES, seed=7))
    assert first.equals(assign_splits(frame, SplitPlan(FRACTIONS, EDGES, seed=7)))
    assert not first.equals(assign_splits(frame, SplitPlan(FRACTIONS, EDGES, seed=8)))


def test_index_is_kept():
    frame = _anonymous(20).set_axis(range(100, 120))
    split = assign_splits(frame, SplitPlan(FRACTIONS, EDGES, seed=0))
    assert list(split.index) == list(range(100, 120)) and split.name == "split"


def test_tiny_inputs():
    empty = assign_splits(_anonymous(0), SplitPlan(FRACTIONS, EDGES, seed=0))
    assert empty.empty
    assert assign_splits(_anonymous(1), SplitPlan(FRACTIONS, EDGES, seed=0)).iloc[0] in SPLITS
    one_person = pd.DataFrame({"dataset": "d", "identity": "x", "age": [20, 40, 70]})
    assert assign_splits(one_person, SplitPlan(FRACTIONS, EDGES, seed=0)).nunique() == 1


def test_a_lone_group_lands_in_each_split_as_often_as_its_fraction():
    """No rounding bias towards train: a one-row stratum follows the fractions across seeds."""
    one = _anonymous(1)
    counts = pd.Series([assign_splits(one, SplitPlan(FRACTIONS, EDGES, seed=s)).iloc[0] for s in range(600)]).value_counts(
        normalize=True
    )
    for name, target in FRACTIONS.items():
        assert counts[name] == pytest.approx(target, abs=0.06)


def test_no_val_fraction_gives_no_val_rows():
    split = assign_splits(_anonymous(300), SplitPlan({"train": 0.7, "val": 0.0, "test": 0.3}, EDGES, seed=0))
    assert set(split) == {"train", "test"}


def test_ages_below_the_first_band_are_still_split():
    frame = pd.DataFrame({"dataset": "d", "identity": None, "age": [3, 5, 8, 20, 30, 40] * 50})
    split = assign_splits(frame, SplitPlan(FRACTIONS, [16, 31], seed=0))
    assert split.notna().all()
    assert split[frame["age"] < 16].value_counts(normalize=True)["train"] == pytest.approx(0.6, abs=0.05)


def test_frames_without_identity_column_split_row_by_row():
    frame = _anonymous(200).drop(columns="identity")
    assert assign_splits(frame, SplitPlan(FRACTIONS, EDGES, seed=0)).notna().all()


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits(_anonymous(5), SplitPlan({"train": 0.5, "val": 0.1, "test": 0.1}, EDGES, seed=0))


def test_each_dataset_is_split_independently_of_the_others():
    a = _people(50, 100, seed=1, dataset="a")
    b = _people(50, 100, seed=2, dataset="b")
    together = split_manifest(pd.concat([a, b], ignore_index=True), SplitPlan(FRACTIONS, EDGES, seed=4))
    alone = split_manifest(a, SplitPlan(FRACTIONS, EDGES, seed=4))
    assert list(together.iloc[: len(a)]) == list(alone)


def test_the_same_identity_in_two_datasets_may_differ_but_never_within_one():
    both = pd.concat([_people(40, 0, seed=1, dataset="a"), _people(40, 0, seed=1, dataset="b")], ignore_index=True)
    both["split"] = split_manifest(both, SplitPlan(FRACTIONS, EDGES, seed=0))
    assert (both.groupby(["dataset", "identity"])["split"].nunique() == 1).all()


def test_summary_counts_rows_bands_and_identities():
    frame = _people(60, 40, seed=9)
    frame["split"] = split_manifest(frame, SplitPlan(FRACTIONS, EDGES, seed=0))
    summary = split_summary(frame, EDGES)["d"]
    assert sum(summary["rows"].values()) == len(frame)
    assert sum(sum(b.values()) for b in summary["by_age_band"].values()) == len(frame)
    assert summary["by_age_band"]["train"] and list(summary["by_age_band"]["train"]) == [
        band for band in ["0-15", "16-30", "31-45", "46-60", "61+"] if band in summary["by_age_band"]["train"]
    ]
    assert sum(summary["identities"].values()) == 60
    assert summary["rows_without_identity"] == 40
    assert summary["identities_in_several_splits"] == 0


def test_summary_reports_an_identity_put_in_two_splits_by_hand():
    frame = pd.DataFrame({"dataset": "d", "identity": ["x", "x", "y"], "age": [20, 21, 50],
                          "split": ["train", "test", "train"]})
    assert split_summary(frame, EDGES)["d"]["identities_in_several_splits"] == 1


def test_with_cluster_identities_keeps_known_identities():
    from stages.lib.splitting.split import with_cluster_identities

    frame = pd.DataFrame({"identity": ["ann", None, None], "age": [30, 31, 32]})
    assert with_cluster_identities(frame, ["d:0", "d:0", "d:1"]).tolist() == ["ann", "cluster:d:0", "cluster:d:1"]
    with pytest.raises(ValueError, match="2 cluster labels for 3 rows"):
        with_cluster_identities(frame, ["d:0", "d:1"])


ROOT = Path(__file__).resolve().parents[2]


def planted_look_alikes(n_people: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A crops manifest of 2 photos per person (UTKFace-like: no identity labels) and embeddings in
    which each person's two photos are near-duplicates and people lie far apart."""
    from stages.lib.core.schema import MANIFEST_COLUMNS

    rng = np.random.default_rng(seed)
    people = rng.normal(size=(n_people, 16)).astype(np.float32) * 3
    embeddings = np.concatenate([people, people + rng.normal(scale=0.01, size=people.shape)])
    ages = np.tile(rng.integers(1, 90, n_people), 2)
    manifest = pd.DataFrame({"id": [f"u/{i}" for i in range(2 * n_people)], "dataset": "utkface", "path": "x",
                             "age": ages, "gender": "female", "race": "white", "identity": None, "box": None,
                             "cropped": True, "source_meta": "", "crop_path": "x"})[MANIFEST_COLUMNS + ["crop_path"]]
    return manifest, embeddings


def write_store(folder: Path, ids, embeddings: np.ndarray, seed: int = 0) -> None:
    """A finished features store (the features / identity stages' format), rows in a shuffled order."""
    import json

    from stages.lib.backbones.store import FEATURES_FILE, INDEX_FILE, META_FILE

    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(ids))  # feature rows need not follow the manifest's order
    np.save(folder / FEATURES_FILE, embeddings[order].astype(np.float16))
    pd.DataFrame({"id": np.asarray(ids)[order], "row": np.arange(len(order))}).to_parquet(folder / INDEX_FILE)
    (folder / META_FILE).write_text(json.dumps({"file": FEATURES_FILE, "shape": list(embeddings.shape)}))


def split_project(tmp_path, monkeypatch, manifest: pd.DataFrame, clusters, features: np.ndarray,
                  identity: np.ndarray | None = None, identity_status: dict | None = None) -> None:
    """A project folder holding the crops manifest, the features, optionally the identity stage's
    output, and params with `split.clusters` = clusters."""
    import yaml

    from stages.lib.splitting.identity import write_status

    (tmp_path / "data/crops").mkdir(parents=True)
    manifest.to_parquet(tmp_path / "data/crops/manifest.parquet", index=False)
    write_store(tmp_path / "data/features", manifest["id"], features)
    if identity is not None:
        write_store(tmp_path / "data/identity", manifest["id"], identity, seed=1)
    if identity_status is not None:
        write_status(tmp_path / "data/identity", identity_status)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = "full"
    raw["split"]["clusters"] = clusters
    raw["roles"]["finetune"] = "utkface"   # a dataset that is trained on is split (an evaluate-only one is all test)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)


def run_split() -> tuple[pd.DataFrame, dict]:
    import json

    from stages import split as stage

    assert stage.main([]) == 0
    return pd.read_parquet("data/processed/manifest.parquet"), json.loads(Path("data/processed/split.json").read_text())


def test_split_stage_keeps_look_alikes_together_and_reports_leakage(tmp_path, monkeypatch):
    """Planted near-duplicates (same person, two photos) never straddle the grouped split; the naive
    split is kept beside it, and split.json counts the test faces with a look-alike in train."""
    n_people = 150
    manifest, embeddings = planted_look_alikes(n_people)
    split_project(tmp_path, monkeypatch, manifest, {"threshold": 0.4, "metric": "euclidean"}, embeddings)

    out, summary = run_split()
    assert out["cluster"].nunique() == n_people
    assert (out.groupby("cluster")["split"].nunique() == 1).all()
    straddling = (out.groupby("cluster")["split_naive"].nunique() > 1).sum()
    assert straddling > 0  # the naive split does put one person on both sides
    leakage = summary["leakage"]["utkface"]
    assert leakage["grouped"]["test_faces_with_near_train"] == 0
    assert leakage["naive"]["test_faces_with_near_train"] > 0
    assert leakage["naive"]["near_train_same_age"] == leakage["naive"]["test_faces_with_near_train"]
    assert leakage["clusters"] == n_people and leakage["faces_in_shared_clusters"] == 2 * n_people
    assert leakage["largest_cluster"] == 2 and leakage["crowded_clusters_resplit"] == 0
    assert summary["datasets"]["utkface"]["naive_equals_grouped"] is False


def test_look_alikes_are_measured_in_the_identity_embedding_not_the_heads_features(tmp_path, monkeypatch):
    """With embedding dlib_resnet the split reads the identity stage's cached descriptors (here the only
    place the look-alikes show), whatever the heads' features are, at dlib's same-person 0.6."""
    n_people = 100
    manifest, embeddings = planted_look_alikes(n_people)
    noise = np.random.default_rng(5).normal(size=embeddings.shape).astype(np.float32) * 3
    split_project(tmp_path, monkeypatch, manifest, {"embedding": "dlib_resnet", "threshold": 0.6}, noise,
                  identity=embeddings, identity_status={"computed": True, "embedding": "dlib_resnet", "reason": None})

    out, summary = run_split()
    assert out["cluster"].nunique() == n_people and (out.groupby("cluster")["split"].nunique() == 1).all()
    assert summary["clusters"]["embedding"] == "dlib_resnet" and summary["clusters_skipped"] is None
    assert summary["datasets"]["utkface"]["naive_equals_grouped"] is False


def test_without_identities_or_clusters_the_split_says_naive_equals_grouped(tmp_path, monkeypatch):
    manifest, embeddings = planted_look_alikes(60)
    split_project(tmp_path, monkeypatch, manifest, None, embeddings)
    out, summary = run_split()
    assert out["split"].equals(out["split_naive"])
    assert summary["datasets"]["utkface"]["naive_equals_grouped"] is True


def test_without_the_dlib_extra_the_split_keeps_identities_and_says_why(tmp_path, monkeypatch, capsys):
    manifest, embeddings = planted_look_alikes(60)
    reason = 'dlib is not importable (No module named dlib); the dlib_resnet backbone needs the optional extra'
    split_project(tmp_path, monkeypatch, manifest, {"embedding": "dlib_resnet", "threshold": 0.6}, embeddings,
                  identity_status={"computed": False, "embedding": "dlib_resnet", "reason": reason})
    out, summary = run_split()
    assert "cluster" not in out.columns and summary["clusters"] is None
    assert "identity stage made no pass" in summary["clusters_skipped"] and reason in summary["clusters_skipped"]
    assert summary["datasets"]["utkface"]["naive_equals_grouped"] is True
    assert "identities only" in capsys.readouterr().err


def test_split_names_the_identity_stage_when_its_output_is_missing(tmp_path, monkeypatch, capsys):
    from stages import split as stage

    manifest, embeddings = planted_look_alikes(10)
    split_project(tmp_path, monkeypatch, manifest, {"embedding": "dlib_resnet", "threshold": 0.6}, embeddings)
    assert stage.main([]) == 2
    assert "dvc repro identity" in capsys.readouterr().err


class CountingDescriptor:
    """Stands in for dlib's descriptor in the registry: colour means, and a count of model loads."""

    def __init__(self, fail: Exception | None = None):
        self.loads, self.fail = 0, fail

    def describe(self, config):
        from stages.lib.backbones.registry import BackboneSpec

        return BackboneSpec(name="dlib_resnet", input_size=config.input_size, alignment="fake", feature_dim=3,
                            head_width=config.fc_width, published_heads=False, weights_file=None)

    def load(self, config, seed, root):
        if self.fail:
            raise self.fail
        self.loads += 1
        return lambda images, margins: np.asarray(images, np.float32).reshape(len(images), -1, 3).mean(axis=1)


@pytest.fixture()
def identity_project(tmp_path, monkeypatch):
    """Crops and their manifest, and params asking for dlib look-alike clusters."""
    import yaml

    from tests.backbones.test_store import write_crops

    write_crops(tmp_path, n=12).to_parquet(tmp_path / "data/crops/manifest.parquet", index=False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profile"] = "full"
    raw["split"]["clusters"] = {"embedding": "dlib_resnet", "threshold": 0.6}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return raw


def set_clusters(raw: dict, clusters) -> None:
    import yaml

    raw["split"]["clusters"] = clusters
    Path("params.yaml").write_text(yaml.safe_dump(raw))


def test_identity_stage_runs_dlib_once_and_reuses_it_when_only_the_split_changes(identity_project, monkeypatch):
    import json

    from stages import identity as stage
    from stages.lib.backbones import registry
    from stages.lib.backbones.store import read_features

    fake = CountingDescriptor()
    monkeypatch.setitem(registry._REGISTRY, "dlib_resnet", fake)
    assert stage.main(["--no-progress"]) == 0
    store = read_features(Path("data/identity"))
    assert store.values.shape == (12, 3) and store.meta["backbone"]["name"] == "dlib_resnet"
    assert json.loads(Path("data/identity/status.json").read_text())["computed"] is True
    identity_project["split"].update(train=0.5, test=0.4)
    set_clusters(identity_project, {"embedding": "dlib_resnet", "threshold": 0.5, "max_size": 5})
    assert stage.main(["--no-progress"]) == 0
    assert fake.loads == 1  # the finished pass over the same crops was reused


def test_identity_stage_says_why_it_made_no_pass(identity_project, monkeypatch):
    import json

    from stages import identity as stage
    from stages.lib.backbones import registry
    from stages.lib.backbones.dlib_resnet import BackboneUnavailable

    missing = BackboneUnavailable('dlib is not importable (No module named dlib); pip install -e ".[dlib]"')
    monkeypatch.setitem(registry._REGISTRY, "dlib_resnet", CountingDescriptor(fail=missing))
    assert stage.main(["--no-progress"]) == 0
    status = json.loads(Path("data/identity/status.json").read_text())
    assert status["computed"] is False and 'pip install -e ".[dlib]"' in status["reason"]
    set_clusters(identity_project, None)
    assert stage.main(["--no-progress"]) == 0
    assert "split.clusters is null" in json.loads(Path("data/identity/status.json").read_text())["reason"]
    set_clusters(identity_project, {"embedding": "features", "threshold": 0.4})
    assert stage.main(["--no-progress"]) == 0
    assert "heads' own features" in json.loads(Path("data/identity/status.json").read_text())["reason"]


def test_a_photo_in_two_datasets_takes_the_split_of_the_first():
    """UTKFace aligned and in the wild are the same photos: the aligned copy follows the in-the-wild
    (finetune) split, so a retrained head is never tested on a photo it trained on."""
    from stages.lib.splitting.split import follow_shared_photos

    rng = np.random.default_rng(0)
    photos = [f"{age}_0_0_2017{i:06d}.jpg" for i, age in enumerate(rng.integers(1, 90, 400))]
    wild = pd.DataFrame({"dataset": "utkface_wild", "photo": photos[100:], "identity": None,
                         "age": [int(p.split("_")[0]) for p in photos[100:]]})
    aligned = pd.DataFrame({"dataset": "utkface", "photo": photos, "identity": None,
                            "age": [int(p.split("_")[0]) for p in photos]})
    other = pd.DataFrame({"dataset": "fairface", "photo": None, "identity": None, "age": rng.integers(1, 90, 50)})
    frame = pd.concat([aligned, wild, other], ignore_index=True)
    independent = split_manifest(frame, SplitPlan(FRACTIONS, EDGES, seed=0))
    followed = follow_shared_photos(frame, independent, ["utkface_wild", "utkface", "fairface"])
    by_photo = frame.assign(split=followed).dropna(subset=["photo"]).groupby("photo")["split"].nunique()
    assert (by_photo == 1).all()
    assert (by_photo.size == 400) and (independent != followed).any()  # they differed before
    wild_rows = frame["dataset"] == "utkface_wild"
    assert followed[wild_rows].equals(independent[wild_rows])  # the first dataset keeps its own split
    only_aligned = (frame["dataset"] == "utkface") & ~frame["photo"].isin(photos[100:])
    assert followed[only_aligned].equals(independent[only_aligned])
    assert followed[frame["dataset"] == "fairface"].equals(independent[frame["dataset"] == "fairface"])
    assert follow_shared_photos(frame.drop(columns="photo"), independent, []).equals(independent)
