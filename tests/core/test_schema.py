"""The contracts between stages (core/schema.py): a table missing a column is refused with one line
naming what it lacks and has; columns come out in contract order, dtypes fixed."""

import pandas as pd
import pytest

from stages.lib.core.errors import UserError
from stages.lib.core.schema import (MANIFEST_COLUMNS, REJECT_COLUMNS, SchemaError, manifest_frame, read_manifest,
                                    rejects_frame, resampling_clusters, write_manifest, write_rejects)


def face(**changes) -> dict:
    row = {"id": "utk/1.jpg", "dataset": "utk", "path": "data/raw/utk/1.jpg", "age": 31.0, "gender": "male",
           "race": "white", "identity": None, "box": None, "cropped": 1, "source_meta": "1_0_0_x.jpg"}
    return {**row, **changes}


def test_resampling_clusters_are_identities_first_then_look_alikes():
    rows = pd.DataFrame({"dataset": ["imdb", "imdb", "utk", "utk"], "identity": ["7", None, None, None],
                         "cluster": ["imdb:1", "imdb:2", "utk:5", None]})
    found = resampling_clusters(rows)
    assert found[:3].tolist() == ["imdb:identity:7", "imdb:2", "utk:5"] and pd.isna(found[3])


def test_a_manifest_missing_a_column_is_refused_naming_what_it_lacks_and_has():
    rows = [{k: v for k, v in face().items() if k not in ("race", "box")}]
    with pytest.raises(SchemaError) as caught:
        manifest_frame(rows)
    has = [c for c in MANIFEST_COLUMNS if c not in ("race", "box")]
    assert str(caught.value) == f"manifest lacks columns ['race', 'box']; it has {has}"
    assert isinstance(caught.value, UserError)          # a user's mistake: one line and exit 2 in a stage


def test_manifest_columns_come_in_contract_order_then_the_extras_with_fixed_dtypes():
    frame = manifest_frame([{"crop_path": "c/1.png", **dict(reversed(face().items()))}])
    assert list(frame.columns) == MANIFEST_COLUMNS + ["crop_path"]
    assert frame["age"].dtype == "int64" and frame["age"].iloc[0] == 31 and frame["cropped"].dtype == bool
    empty = manifest_frame([])
    assert list(empty.columns) == MANIFEST_COLUMNS and empty.empty


def test_rejects_keep_only_their_columns_in_order():
    frame = rejects_frame([{"reason": "no_face", "extra": 1, "path": "p", "stage": "crop", "dataset": "utk"}])
    assert list(frame.columns) == REJECT_COLUMNS and frame.iloc[0].tolist() == ["utk", "p", "crop", "no_face"]
    with pytest.raises(SchemaError, match=r"rejects lacks columns \['stage'\]"):
        rejects_frame([{"dataset": "utk", "path": "p", "reason": "r"}])
    assert list(rejects_frame([]).columns) == REJECT_COLUMNS


def test_a_manifest_round_trips_and_a_bad_one_on_disk_is_named_by_its_path(tmp_path):
    path = tmp_path / "interim" / "utk" / "manifest.parquet"
    write_manifest(manifest_frame([face()]), path)
    pd.testing.assert_frame_equal(read_manifest(path), manifest_frame([face()]))
    manifest_frame([face()]).drop(columns="gender").to_parquet(tmp_path / "old.parquet")
    with pytest.raises(SchemaError, match=f"manifest {tmp_path / 'old.parquet'} lacks columns \\['gender'\\]"):
        read_manifest(tmp_path / "old.parquet")
    with pytest.raises(FileNotFoundError, match="missing.parquet not found: run the stage that writes it first"):
        read_manifest(tmp_path / "missing.parquet")
    with pytest.raises(SchemaError):
        write_manifest(pd.DataFrame({"id": ["x"]}), tmp_path / "never.parquet")
    assert not (tmp_path / "never.parquet").exists()


def test_rejects_are_written_as_csv_with_their_header(tmp_path):
    path = tmp_path / "crops" / "rejects.csv"
    write_rejects(rejects_frame([{"dataset": "utk", "path": "p,1", "stage": "crop", "reason": "no_face"}]), path)
    assert path.read_text() == 'dataset,path,stage,reason\nutk,"p,1",crop,no_face\n'
