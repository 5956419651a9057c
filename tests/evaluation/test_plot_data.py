import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from stages.lib.evaluation.plot_data import dvc_tables
from stages.lib.reporting import figures as plots
from stages.lib.core.labels import GENDERS, RACES
from stages.lib.evaluation.disaggregation import group_metrics
from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.core.schema import PREDICTION_COLUMNS

EDGES = [0, 16, 31, 46, 61]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def predictions(n=600, seed=0, race=True, gender_pred=True):
    rng = np.random.default_rng(seed)
    age = rng.integers(16, 90, n)
    gender = rng.choice(GENDERS, n)
    frame = pd.DataFrame({
        "id": [str(i) for i in range(n)], "dataset": "toy", "split": "test", "age": age,
        "age_pred": age + rng.normal(0, 5, n), "age_pred_argmax": np.nan, "gender": gender,
        "gender_prob_female": np.nan,
        "gender_pred": np.where(rng.random(n) < 0.9, gender, "male") if gender_pred else None,
        "race": rng.choice(["white", "black", "asian"], n) if race else None, "experiment": "e"})
    return frame[PREDICTION_COLUMNS]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def legend_texts(figure):
    legends = [axes.get_legend() for axes in figure.axes if axes.get_legend()] + list(figure.legends)
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def test_predicted_vs_actual_has_identity_line_and_n_in_the_legend():
    evaluation = evaluate(predictions(), EDGES, Bootstrap(0))
    figure = plots.predicted_vs_actual_figure(evaluation.tables["predicted_vs_actual"], "toy")
    texts = legend_texts(figure)
    assert any("n=600" in t for t in texts) and "perfect prediction" in texts
    axes = figure.axes[0]
    assert axes.get_xlabel() == "true age (years)" and axes.get_ylabel() == "predicted age (years)"


def test_error_by_age_draws_one_line_per_group_in_two_panels():
    evaluation = evaluate(predictions(), EDGES, Bootstrap(0))
    figure = plots.error_by_age_figure(evaluation.tables["error_by_age_race"], "toy")
    assert len(figure.axes) == 2
    assert [t.split(" (")[0] for t in legend_texts(figure)] == ["white", "black", "asian"]
    assert all("n=" in t for t in legend_texts(figure))


def test_group_bars_carry_n_and_mark_small_groups():
    groups = group_metrics(predictions(200), EDGES, Bootstrap(100), min_group_size=60)
    figure = plots.group_bars_figure(groups, "race*gender")
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert len(labels) == 6 and all("n=" in label for label in labels)
    assert any("small" in label for label in labels) and "white × male" in labels[0]


def test_heatmap_writes_value_and_n_in_each_cell():
    values = pd.DataFrame([[1.5, np.nan], [-2.0, 3.0]], index=["a", "b"], columns=["x", "y"])
    counts = pd.DataFrame([[10, 0], [5, 7]], index=["a", "b"], columns=["x", "y"])
    figure = plots.heatmap_figure(values, counts, "t", diverging=True)
    cells = [t.get_text() for t in figure.axes[0].texts]
    assert cells == ["1.5\nn=10", "-2.0\nn=5", "3.0\nn=7"]


def test_loss_curves_and_experiments_figures():
    history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [3, 2, 1], "val_loss": [3.5, 2.0, 2.5], "lr": [1, 1, 1]})
    assert plots.loss_columns(history) == ["loss", "val_loss"]
    figure = plots.loss_curves_figure({"retrained": history})
    assert legend_texts(figure) == ["retrained"] and figure.axes[0].get_title() == "loss"
    per_head = pd.DataFrame({"epoch": [1, 2], "age_loss": [3, 2], "val_age_loss": [3, 2.5],
                             "gender_loss": [0.7, 0.6], "val_gender_loss": [0.8, 0.7]})
    figure = plots.loss_curves_figure({"x2": per_head, "x3": per_head})
    assert [a.get_title() for a in figure.axes] == ["age loss", "gender loss"]
    assert legend_texts(figure) == ["x2", "x3"]                     # one legend for every panel
    comparison = pd.DataFrame({"experiment": ["a", "b"], "dataset": ["utk", "utk"], "n": [10, 10],
                               "mae": [8.0, 7.0], "mae_ci_low": [7.5, 6.5], "mae_ci_high": [8.5, 7.5],
                               "rmse": [11.0, 10.0], "rmse_ci_low": [10.0, 9.0], "rmse_ci_high": [12.0, 11.0]})
    figure = plots.experiments_figure(comparison)
    ticks = {t.get_text(): t.get_position()[1] for t in figure.axes[0].get_yticklabels()}
    assert ticks["a"] > ticks["b"]                                  # first experiment on top
    assert any("n=10" in t for t in legend_texts(figure))


def test_write_figures_draws_what_the_data_allows(tmp_path):
    full = plots.write_figures(evaluate(predictions(), EDGES, Bootstrap(0)), tmp_path / "full", "toy")
    assert {"gender_accuracy_race_gender", "women_gender_accuracy", "error_by_age_race",
            "mae_by_race_x_age_band"} <= set(full)
    for path in full.values():
        assert path.read_bytes()[:8] == PNG_MAGIC
    bare = plots.write_figures(evaluate(predictions(race=False, gender_pred=False), EDGES, Bootstrap(0)),
                               tmp_path / "bare", "toy")
    assert not {"gender_accuracy_race_gender", "women_gender_accuracy", "error_by_age_race"} & set(bare)
    assert {"predicted_vs_actual", "error_by_age_gender", "mae_by_age_band"} <= set(bare)


def test_dvc_tables_keep_fixed_columns():
    tables = dvc_tables(evaluate(predictions(race=False), EDGES, Bootstrap(0)))
    assert list(tables["error_by_age_race"].columns) == ["age", *RACES]
    assert tables["error_by_age_race"].empty                       # header only: no race in the data
    assert list(tables["error_by_age_gender"].columns) == ["age", *GENDERS]
    assert list(tables["predicted_vs_actual"].columns) == ["age", "n", "mean_pred", "q25", "q75"]
    with_race = dvc_tables(evaluate(predictions(), EDGES, Bootstrap(0)))["error_by_age_race"]
    assert list(with_race.columns) == ["age", *RACES] and with_race["others"].isna().all()
    assert with_race["white"].notna().any()
    bars = dvc_tables(evaluate(predictions(), EDGES, Bootstrap(0)))["mae_by_group"]
    assert bars["group"].iloc[0] == "all:all" and "race:white" in set(bars["group"])
