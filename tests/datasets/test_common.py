"""What every adapter shares (common.py): its own age range, its seeded sample, rejects with their reasons."""

import pytest

from stages.lib.datasets import OptionsError, run_adapter
from tests.datasets.raw_files import LABELS, reasons, write_jpg


def test_a_dataset_narrows_the_age_range_with_its_own_options(wiki_folder):
    result = run_adapter("imdb_wiki", wiki_folder, "wiki", {"variant": "wiki", "min_age": 25}, labels=LABELS)
    assert reasons(result)["good_female.jpg"] == "age_out_of_range"
    assert "age 20 is outside this dataset's age range 25..100" in {
        r["path"].rsplit("/", 1)[-1]: r["reason"] for r in result.rejects}["good_female.jpg"]
    with pytest.raises(OptionsError, match=r"datasets\.wiki\.options: max_age 120 is above labels\.max_age 100"):
        run_adapter("imdb_wiki", wiki_folder, "wiki", {"variant": "wiki", "max_age": 120}, labels=LABELS)
    with pytest.raises(OptionsError, match=r"datasets\.wiki\.options: min_age 50 must be below max_age 40"):
        run_adapter("imdb_wiki", wiki_folder, "wiki", {"variant": "wiki", "min_age": 50, "max_age": 40}, labels=LABELS)


def utkface_aligned_names(n: int) -> list[str]:
    return [f"{20 + i % 60}_{i % 2}_{i % 5}_2017011617452{i:04d}.jpg.chip.jpg" for i in range(n)]


def test_sample_keeps_a_seeded_share_and_rejects_the_rest_with_their_labels(tmp_path):
    for name in utkface_aligned_names(50):
        write_jpg(tmp_path / name)
    whole = run_adapter("utkface", tmp_path, "u", {}, labels=LABELS)
    drawn = run_adapter("utkface", tmp_path, "u", {"sample": 20, "sample_seed": 3}, labels=LABELS)
    again = run_adapter("utkface", tmp_path, "u", {"sample": 20, "sample_seed": 3}, labels=LABELS)
    other = run_adapter("utkface", tmp_path, "u", {"sample": 20, "sample_seed": 4}, labels=LABELS)
    ids = [row["id"] for row in drawn.rows]
    assert len(ids) == 20 and ids == [row["id"] for row in again.rows] != [row["id"] for row in other.rows]
    assert ids == [row["id"] for row in whole.rows if row["id"] in set(ids)]  # the dataset's order is kept
    assert len(drawn.rejects) == 30 and {r["reason"].split(":")[0] for r in drawn.rejects} == {"not_sampled"}
    assert "keeps 20 of the 50 rows" in drawn.rejects[0]["reason"]
    assert all({"age", "gender", "race"} <= set(r) for r in drawn.rejects)  # the quality summary sees who was left out
    assert len(run_adapter("utkface", tmp_path, "u", {"sample": 80}, labels=LABELS).rows) == 50
