import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.skin import SkinBands, with_measurements
from stages.lib.evaluation.skin_analysis import TABLES, SkinAnalysis, analyse, measured_counts, quality_correlations
from tests.evaluation.frames import EDGES
from tests.evaluation.skin_frames import planted


def test_every_analysis_of_one_table_is_written(tmp_path):
    predictions, measurements = planted(n=600, skin_effect=1.0)
    faces = with_measurements(predictions, measurements)
    analyse(faces, SkinBands.from_faces(faces), Bootstrap(30), edges=EDGES).write(tmp_path)
    written = {path.stem for path in tmp_path.glob("*.csv")}
    assert written == {*TABLES, "skin_groups", "skin_gaps", "skin_significance"}


def test_a_table_without_quality_columns_gets_breakdowns_and_slopes_but_no_adjusted_gaps():
    predictions, measurements = planted(n=400)
    faces = with_measurements(predictions, measurements[["id", "skin_lightness", "skin_hue"]])
    analysis = analyse(faces, SkinBands.from_faces(faces), Bootstrap(0), edges=EDGES)
    assert analysis.adjusted_gaps.empty and not analysis.slopes.empty and analysis.breakdown is not None


def test_measured_counts_name_each_reason_per_group_and_nothing_is_dropped():
    predictions, measurements = planted(n=200)
    measurements.loc[:9, ["skin_lightness", "skin_hue"]] = np.nan
    measurements.loc[:9, "problem"] = "all-dark crop"
    measurements.loc[10:14, "skin_hue"] = np.nan
    measurements.loc[10:14, "problem"] = "grey-scale photo: no hue; no source size: fixed-size chips"
    counts = measured_counts(with_measurements(predictions, measurements)).set_index("group")
    assert counts.loc["all", "faces"] == 200
    assert counts.loc["all", "with lightness"] == 190 and counts.loc["all", "with hue"] == 185
    assert counts.loc["all", "all-dark crop"] == 10 and counts.drop("all")["all-dark crop"].sum() == 10
    assert counts.loc["all", "grey-scale photo: no hue"] == 5     # a face's joined reasons count apart
    sizeless = measurements["problem"].fillna("").str.contains("no source size").sum()
    assert counts.loc["all", "no source size: fixed-size chips"] == sizeless >= 5


def test_a_quality_measure_that_follows_lightness_correlates_with_it():
    predictions, measurements = planted(n=500)
    measurements["background_luminance"] = measurements["skin_lightness"] * 0.8 + 5
    table = quality_correlations(measurements).set_index("measure")["spearman_with_lightness"]
    assert table["background_luminance"] == 1.0 and abs(table["contrast"]) < 0.2


def test_a_model_the_report_does_not_discuss_gets_its_breakdowns_only():
    predictions, measurements = planted(n=300)
    faces = with_measurements(predictions, measurements)
    analysis = analyse(faces, SkinBands.from_faces(faces), Bootstrap(0), edges=EDGES, breakdown_only=True)
    assert analysis.breakdown is not None
    assert all(getattr(analysis, name).empty for name in TABLES)


def test_an_analysis_reads_back_value_for_value(tmp_path):
    """Every value as written; an empty text reads back as missing (CSV holds no difference)."""
    predictions, measurements = planted(n=600, skin_effect=1.0)
    faces = with_measurements(predictions, measurements)
    analysis = analyse(faces, SkinBands.from_faces(faces), Bootstrap(30), edges=EDGES)
    analysis.write(tmp_path)
    read = SkinAnalysis.read(tmp_path)
    pairs = [(getattr(read.breakdown, name), getattr(analysis.breakdown, name))
             for name in ("groups", "gaps", "significance")]
    for back, written in pairs + [(getattr(read, name), getattr(analysis, name)) for name in TABLES]:
        assert not written.empty
        pd.testing.assert_frame_equal(back, written.replace("", np.nan), check_dtype=False)
    assert all(getattr(SkinAnalysis.read(tmp_path, breakdown_only=True), name).empty for name in TABLES)


def test_an_analysis_never_written_names_the_stage_that_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="evaluate@<experiment>, audit_models"):
        SkinAnalysis.read(tmp_path / "absent")


def test_an_analysis_written_by_an_older_version_names_the_stage_to_run_again(tmp_path):
    predictions, measurements = planted(n=600, skin_effect=1.0)
    faces = with_measurements(predictions, measurements)
    analyse(faces, SkinBands.from_faces(faces), Bootstrap(30), edges=EDGES).write(tmp_path)
    gaps = pd.read_csv(tmp_path / "adjusted_gaps.csv")
    gaps.drop(columns=["before_p_holm", "significant_before"]).to_csv(tmp_path / "adjusted_gaps.csv", index=False)
    with pytest.raises(FileNotFoundError, match=r"older version \(no before_p_holm, significant_before\).*evaluate@"):
        SkinAnalysis.read(tmp_path)
