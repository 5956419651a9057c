import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.skin import SkinBands, band_column, band_names, skin_breakdown, with_measurements
from tests.evaluation.frames import EDGES
from tests.evaluation.skin_frames import planted


def test_quintile_edges_come_from_the_pooled_faces_and_the_paper_cuts_sit_beside_them():
    faces = pd.DataFrame({"skin_lightness": np.arange(1, 101, dtype=float), "skin_hue": np.arange(101, 201.0)})
    bands = SkinBands.from_faces(faces)
    assert bands.edges["skin_lightness"]["quintile"] == pytest.approx((20.8, 40.6, 60.4, 80.2))
    assert bands.edges["skin_lightness"]["paper"] == (60.0,)
    assert bands.edges["skin_hue"]["paper"] == (55.0,)
    assert set(bands.table()["scheme"]) == {"quintile", "paper"}


def test_a_value_on_a_cut_goes_to_the_upper_band_and_an_unmeasured_face_to_none():
    bands = band_column(pd.Series([59.9, 60.0, np.nan, 75.0]), (60.0,))
    assert list(bands.astype(object).where(bands.notna(), None)) == ["< 60", "≥ 60", None, "≥ 60"]
    assert band_names((40.0, 60.0)) == ["< 40", "40–60", "≥ 60"]


def test_measurements_join_on_id_and_fill_the_clusters_the_predictions_lack():
    predictions, measurements = planted(n=20)
    predictions = predictions.drop(columns="cluster")
    joined = with_measurements(predictions, measurements.iloc[:10], pd.Series({"toy/f0": "p1", "toy/f1": "p1"}))
    assert joined["skin_lightness"].notna().sum() == 10 and len(joined) == 20
    assert list(joined["cluster"][:3].astype(object).where(joined["cluster"][:3].notna(), None)) == ["p1", "p1", None]


def test_a_planted_lightness_effect_makes_the_darkest_band_worse_and_hue_shows_nothing():
    predictions, measurements = planted(n=2000, skin_effect=1.0)
    faces = with_measurements(predictions, measurements)
    faces.loc[faces.index[:50], "skin_lightness"] = np.nan       # unmeasured: in `all`, in no lightness band
    result = skin_breakdown(faces, SkinBands.from_faces(faces), Bootstrap(200), edges=EDGES)
    gap = result.gaps.set_index(["attribute", "metric"])
    assert gap.loc[("lightness_quintile", "mae"), "worst_group"].startswith("< ")
    assert gap.loc[("lightness_quintile", "mae"), "verdict"] == "worse"
    assert gap.loc[("lightness_paper*gender", "gender_accuracy"), "verdict"] == "worse"
    assert gap.loc[("hue_quintile", "mae"), "verdict"] == "n.s."
    groups = result.groups
    assert groups.loc[groups["attribute"] == "all", "n"].item() == 2000
    assert groups.loc[groups["attribute"] == "lightness_quintile", "n"].sum() == 1950
    assert set(result.significance["adjustment"]) <= {"holm", "bh", ""}


def test_where_every_age_is_a_band_no_skin_table_carries_an_age_error():
    predictions, measurements = planted(n=300, skin_effect=1.0)
    predictions["age_band_source"] = "20-29"
    result = skin_breakdown(with_measurements(predictions, measurements),
                            SkinBands.from_faces(measurements), Bootstrap(50), edges=EDGES)
    assert result.groups["mae"].isna().all()
    assert "mae" not in set(result.gaps["metric"])


def test_without_skin_columns_there_is_no_breakdown():
    predictions, _ = planted(n=50)
    assert skin_breakdown(predictions, SkinBands.from_faces(predictions), Bootstrap(0), edges=EDGES) is None


def test_point_values_are_those_of_fairlearns_metricframe():
    from stages.lib.evaluation.disaggregation import point_metrics, prepare
    from stages.lib.evaluation.skin import disaggregate_skin, with_bands
    predictions, measurements = planted(n=400, skin_effect=1.0)
    faces = with_measurements(predictions, measurements)
    bands = SkinBands.from_faces(faces)
    table = disaggregate_skin(faces, bands, Bootstrap(0), edges=EDGES).table
    ours = table[table["attribute"] == "lightness_paper*gender"].set_index("group")
    theirs = point_metrics(prepare(with_bands(faces, bands), EDGES), "lightness_paper*gender")
    for column in ("n", "mae", "rmse", "mean_error", "gender_accuracy", "n_gender"):
        assert ours[column].to_numpy() == pytest.approx(theirs.loc[ours.index, column].to_numpy())
