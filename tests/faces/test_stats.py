"""Crop statistics: who got lost in the crop stage, and the detector's detection rate by group (on the
photos it ran on, and on the ready crops it was also run on)."""

import pandas as pd

from stages.lib.core.schema import manifest_frame
from stages.lib.faces.crop import crop_manifest
from stages.lib.faces.stats import crop_quality, precropped_detection
from tests.faces.photos import HAAR, manifest_row


def test_quality_counts_reasons_and_who_got_lost(tmp_path, mixed_manifest):
    result = crop_manifest(mixed_manifest, tmp_path / "crops", HAAR, workers=1, progress=False)
    quality = crop_quality(mixed_manifest, result.outcomes, [0, 16, 31, 46, 61])
    a, b = quality["a"], quality["b"]
    assert (a["rows_in"], a["kept"], a["stage"]) == (4, 2, "crop") and (b["rows_in"], b["kept"]) == (4, 0)
    assert a["rejected_by_reason"] == {"image_empty": 1, "no_face": 1}
    assert a["routes"] == {"dataset_box": 1, "haar": 2, "precropped": 1}
    assert a["kept_by"]["race"]["unknown"] == 1 and a["kept_by"]["race"]["white"] == 1
    assert a["rejected_by"]["race"]["black"] == 2
    assert a["rejection_rate_by"]["race"]["black"] == 1.0
    # the zero-byte file never reached the detector: only the blank photo was a detection attempt
    assert a["detection"]["attempted"] == 1 and a["detection"]["found"] == 0
    assert a["detection"]["by"]["age_band"] == {"0-15": {"in": 1, "found": 0, "rate": 0.0}}
    assert "detection" not in b


def detector_run():
    """Six rows of dataset `a` through YuNet (kept, no face, unreadable) and one by its box; dataset `b`
    only ready crops: the manifest and the crop outcomes, built by hand."""
    rows = [manifest_row("a", f"{i}.jpg", f"{i}.jpg", race=race, gender=gender, age=age)
            for i, (race, gender, age) in enumerate([("black", "female", 8), ("black", "male", 30),
                                                     ("white", "female", 30), ("white", "male", 70),
                                                     (None, "female", 30), ("black", "female", 2)])]
    rows.append(manifest_row("a", "boxed.jpg", "boxed.jpg", box=[1.0, 1.0, 5.0, 5.0]))
    rows.append(manifest_row("b", "chip.jpg", "chip.jpg", cropped=True))
    outcomes = pd.DataFrame({
        "route": ["yunet"] * 6 + ["dataset_box", "precropped"],
        "kept": [True, False, True, False, False, True, True, True],
        "reason": [None, "no_face: none found", None, "image_unreadable: x", "no_face: none found", None, None, None],
        "faces_found": pd.array([1, None, 3, None, None, 1, None, None], dtype="Int64"),
    })
    return manifest_frame(rows), outcomes


def test_the_detection_rate_counts_only_readable_photos_the_detector_ran_on():
    manifest, outcomes = detector_run()
    quality = crop_quality(manifest, outcomes, [5, 16, 61])
    detection = quality["a"]["detection"]
    assert {k: detection[k] for k in ("detector", "attempted", "found", "rate", "several_faces")} == {
        "detector": "yunet", "attempted": 5, "found": 3, "rate": 0.6, "several_faces": 1}
    assert detection["by"]["race"] == {"black": {"in": 3, "found": 2, "rate": 0.6667},
                                       "unknown": {"in": 1, "found": 0, "rate": 0.0},
                                       "white": {"in": 1, "found": 1, "rate": 1.0}}
    assert detection["by"]["gender"]["female"] == {"in": 4, "found": 3, "rate": 0.75}
    assert list(detection["by"]["age_band"]) == ["5-15", "16-60", "below bands"]     # in band order
    assert detection["by"]["age_band"]["below bands"] == {"in": 1, "found": 1, "rate": 1.0}
    assert quality["a"]["routes"] == {"dataset_box": 1, "yunet": 6}
    assert "detection" not in quality["b"] and quality["b"]["routes"] == {"precropped": 1}


def test_detection_on_ready_crops_is_reported_per_dataset_and_detector_over_the_rows_it_ran_on():
    cropped = pd.DataFrame({
        "dataset": ["a", "a", "a", "a", "b"], "race": ["black", "black", None, "white", "white"],
        "gender": ["female", "female", "female", "male", "male"], "age": [30, 40, 3, 50, 20],
        "found_by_haar": pd.array([2, 0, 1, None, 0], dtype="Int64"),
    })
    stats = precropped_detection(cropped, ["haar", "yunet"], [5, 16])
    assert set(stats) == {"a", "b"} and set(stats["a"]) == {"haar"}     # no found_by_yunet column: left out
    haar = stats["a"]["haar"]
    assert (haar["attempted"], haar["found"], haar["rate"]) == (3, 2, 0.6667)     # the row it skipped is not counted
    assert haar["by"]["race_gender"] == {"black female": {"in": 2, "found": 1, "rate": 0.5},
                                         "unknown female": {"in": 1, "found": 1, "rate": 1.0}}
    assert haar["by"]["age_band"]["below bands"] == {"in": 1, "found": 1, "rate": 1.0}
    assert stats["b"]["haar"]["rate"] == 0.0
    assert precropped_detection(cropped.drop(columns="found_by_haar"), ["haar"], [5]) == {}
    assert sum(v["in"] for v in haar["by"]["gender"].values()) == haar["attempted"]
