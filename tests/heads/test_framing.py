"""How the faces a head learned from were framed: read from the crop routes, recorded in framing.json,
and chosen for new faces, with a warning where the user's choice differs from the heads'."""

import json
from pathlib import Path

import pandas as pd
import pytest

from stages.lib.heads.framing import (FRAMING_FILE, Framing, choose_framing, read_framing, training_framing,
                                      write_framing)
from tests.backbones.test_store import make_params


def crops_rows(routes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"d/{i}" for i in range(len(routes))], "detector": routes})


def test_the_training_framing_is_read_from_the_crop_routes():
    from stages.lib.heads.framing import training_framing

    chips = training_framing(crops_rows(["precropped"] * 3 + ["yunet"]), 0.4, "utkface")
    assert (chips.kind, chips.margin) == ("chip", None) and "75%" in chips.source
    boxes = training_framing(crops_rows(["dataset_box"] * 3 + ["precropped"]), 0.3, "utkface_wild")
    assert (boxes.kind, boxes.margin) == ("margin", 0.3)
    unrecorded = training_framing(pd.DataFrame({"cropped": [True, True, False]}), 0.4, "folder")
    assert unrecorded.kind == "chip"


def test_an_override_of_the_training_framing_is_warned_about():
    from stages.lib.heads.framing import Framing, choose_framing

    chip, box = Framing("chip", None, "utkface"), Framing("margin", 0.4, "wiki")
    assert choose_framing(chip, False, None, 0.4) == (chip, [])
    assert choose_framing(box, False, None, 0.1) == (box, [])
    framing, warnings = choose_framing(box, True, None, 0.4)
    assert framing.kind == "chip" and "trained on face boxes plus a 0.4 margin" in warnings[0]
    framing, warnings = choose_framing(chip, False, 0.4, 0.4)
    assert framing.margin == 0.4 and "trained on ready face crops" in warnings[0]
    assert choose_framing(box, False, 0.4, 0.2)[1] == []  # the same framing, said explicitly
    framing, warnings = choose_framing(None, False, None, 0.3)
    assert framing.margin == 0.3 and "no framing.json" in warnings[0]


def test_train_records_the_framing_of_its_faces(tmp_path, monkeypatch):
    from stages.lib.core.params import Experiment
    from stages.lib.heads.framing import heads_framing, published_framing, read_framing, write_framing

    params = make_params()
    rows = crops_rows(["dataset_box"] * 4)
    retrained, fine_tuned = Experiment(init="backbone"), Experiment(init="published", protocol="ours")
    baseline = Experiment(init="published", protocol="none")
    assert heads_framing(retrained, rows, params) == read_framing_of(tmp_path, rows, params)
    assert heads_framing(fine_tuned, rows, params) == read_framing_of(tmp_path, rows, params)  # it learned them too
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="dvc repro pretrain"):
        heads_framing(baseline, rows, params)
    write_framing(tmp_path / "models/_pretrain", published_framing())
    assert heads_framing(baseline, rows, params) == published_framing()
    assert read_framing(tmp_path / "models/_pretrain").margin == 0.4


def read_framing_of(folder: Path, rows: pd.DataFrame, params):
    """training_framing's result after a round trip through framing.json."""
    from stages.lib.heads.framing import read_framing, training_framing, write_framing

    write_framing(folder / "m", training_framing(rows, params.crop.margin, params.roles.finetune))
    return read_framing(folder / "m")


@pytest.mark.parametrize("framing", [Framing("chip", None, "utkface training faces"),
                                     Framing("margin", 0.25, "the published heads")])
def test_a_framing_comes_back_from_its_json_file_unchanged(tmp_path, framing):
    write_framing(tmp_path / "heads", framing)
    assert json.loads((tmp_path / "heads" / FRAMING_FILE).read_text()) == {
        "kind": framing.kind, "margin": framing.margin, "source": framing.source}
    assert read_framing(tmp_path / "heads") == framing


def test_heads_without_a_framing_file_have_no_recorded_framing(tmp_path):
    assert read_framing(tmp_path) is None


def test_a_margin_other_than_the_heads_is_warned_about():
    recorded = Framing("margin", 0.4, "wiki")
    framing, warnings = choose_framing(recorded, False, 0.2, 0.4)
    assert (framing.kind, framing.margin) == ("margin", 0.2) and len(warnings) == 1
    assert "face boxes plus a 0.2 margin" in warnings[0] and "trained on face boxes plus a 0.4 margin" in warnings[0]
    assert choose_framing(Framing("chip", None, "utk"), True, None, 0.4) == (Framing("chip", None, "--precropped"), [])


def test_half_chips_or_no_rows_are_not_read_as_chips():
    assert training_framing(crops_rows(["precropped", "yunet"]), 0.4, "d") == Framing(
        "margin", 0.4, "2 training faces of d, 50% of them ready face crops")
    assert training_framing(crops_rows([]), 0.3, "d").kind == "margin"
