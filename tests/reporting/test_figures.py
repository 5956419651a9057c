"""The study's figures (reporting/figures.py), judged from the data each is drawn from (the Axes'
images, lines, patches and labels), never from pixels."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.reporting.figures import (SMALL_CELL, error_by_age_figure, group_bars_figure, heatmap_figure,
                                          loss_curves_figure, overlapping_texts, save_figure, separate_labels,
                                          write_figures)
from stages.lib.reporting.markdown import pivot_display
from tests.evaluation.frames import TOY


# ----- figures ------------------------------------------------------------------------------------------

def test_heatmap_greys_cells_under_the_small_group_size(tmp_path):
    values = pd.DataFrame({"white": [1.0, -9.0], "black": [2.0, 3.0]}, index=["16-30", "61+"])
    counts = pd.DataFrame({"white": [200, 3], "black": [150, 90]}, index=values.index)
    figure = heatmap_figure(values, counts, "t", diverging=True, min_count=30)
    coloured = figure.axes[0].images[0].get_array()
    assert np.ma.is_masked(coloured[1, 0]) and not np.ma.is_masked(coloured[0, 0])
    assert figure.axes[0].images[0].norm.vmax == pytest.approx(3.0)    # the n=3 cell does not set the scale
    assert "(3, *small*)" in pivot_display(values, counts, min_count=30).to_string()


def test_loss_curves_stay_legible_and_a_spike_gets_a_log_axis(tmp_path):
    epochs = np.arange(1, 41)
    histories = {name: pd.DataFrame({"epoch": epochs, "age_loss": 3 - epochs / 20, "val_age_loss": 3.1 - epochs / 20,
                                     "gender_loss": 0.7 - epochs / 100, "val_gender_loss": 0.72 - epochs / 100,
                                     "adversary_loss": np.where(epochs == 5, 33.0, 0.7)})
                 for name in ("retrained", "adversarial", "group_dro", "balanced", "last_layer")}
    figure = loss_curves_figure(histories)
    scales = {axis.get_title(): axis.get_yscale() for axis in figure.axes}
    assert scales["adversary loss (log axis)"] == "log" and scales["age loss"] == "linear"
    path = save_figure(figure, tmp_path / "loss.png")
    assert Image.open(path).size[0] <= 1600


def test_a_heatmap_scales_its_colours_on_the_judged_cells_and_writes_value_and_n_in_each():
    values = pd.DataFrame({"female": [0.95, 0.4, np.nan], "male": [0.9, 0.8, 0.7]}, index=["white", "black", "asian"])
    counts = pd.DataFrame({"female": [300, 5, 0], "male": [250, 200, 100]}, index=values.index)
    figure = heatmap_figure(values * 100, counts, "t", "{:.0f}%", min_count=30)
    axes = figure.axes[0]
    assert (axes.images[0].norm.vmin, axes.images[0].norm.vmax) == (70.0, 95.0)   # the n=5 cell (40%) left out
    grey = axes.images[1]
    assert grey.cmap(1.0) == pytest.approx(to_rgba(SMALL_CELL))
    assert np.ma.getmaskarray(grey.get_array()).tolist() == [[True, True], [False, True], [True, True]]
    texts = {(t.get_position(), t.get_text()): t.get_fontstyle() for t in axes.texts}
    assert texts[((0, 1), "40%\nn=5")] == "italic" and texts[((1, 0), "90%\nn=250")] == "normal"
    assert not any(position == (0, 2) for position, _ in texts)                     # an empty cell stays blank
    assert "grey: under 30 faces" in axes.get_title() and len(figure.axes) == 2     # the heatmap and its colour bar


def test_a_heatmap_with_every_cell_under_the_size_has_no_colour_scale_to_explain():
    values = pd.DataFrame({"a": [1.0]}, index=["x"])
    figure = heatmap_figure(values, pd.DataFrame({"a": [4]}, index=["x"]), "t", min_count=30)
    assert len(figure.axes) == 1 and np.ma.is_masked(figure.axes[0].images[0].get_array()[0, 0])
    plain = heatmap_figure(values, pd.DataFrame({"a": [4]}, index=["x"]), "t")      # min_count 0: nothing greyed
    assert len(plain.axes[0].images) == 1 and "grey" not in plain.axes[0].get_title()


def test_the_loss_panels_are_one_per_loss_and_the_unused_grid_cell_is_removed():
    history = pd.DataFrame({"epoch": [1, 2, 3], "age_loss": [3.0, 2.0, 1.5], "val_age_loss": [3.2, 2.1, 2.5],
                            "gender_loss": [0.7, 0.6, 0.5], "val_gender_loss": [0.8, 0.7, 0.6],
                            "val_adversary_loss": [0.69, 0.70, 0.71]})          # validated only
    figure = loss_curves_figure({"retrained": history})
    panels = {axis.get_title(): axis for axis in figure.axes}
    assert list(panels) == ["age loss", "gender loss", "adversary loss"]          # a 2 x 2 grid, its 4th cell gone
    [dot] = panels["age loss"].collections
    assert dot.get_offsets().tolist() == [[2.0, 2.1]]                             # the best validation epoch
    assert [line.get_label() for line in panels["adversary loss"].lines] == ["retrained"]


def test_error_by_age_leaves_thin_bins_out_but_counts_every_face_in_the_legend():
    table = pd.DataFrame({"group": ["female", "female", "male", "male"], "age_bin": [20, 25, 20, 25],
                          "n": [40, 3, 1200, 15], "mean_error": [1.0, 9.0, -1.0, 2.0], "mae": [4.0, 9.0, 5.0, 6.0]})
    figure = error_by_age_figure(table, "t", min_points=10)
    signed = figure.axes[0]
    lines = {line.get_label(): line for line in signed.lines}
    assert list(lines)[:2] == ["male (n=1,215)", "female (n=43)"]                # the vocabulary's order
    assert lines["female (n=43)"].get_xdata().tolist() == [20] and lines["male (n=1,215)"].get_ydata().tolist() == [-1.0, 2.0]


def test_group_bars_hatch_small_groups_and_leave_groups_without_a_value_out():
    groups = pd.DataFrame({"attribute": ["all", "race", "race", "race"], "group": ["all", "white", "black", "asian"],
                           "n": [1300, 1000, 290, 10], "mae": [5.0, 4.5, 6.5, np.nan], "small": [False, False, False, True],
                           "mae_ci_low": [4.8, 4.2, 6.0, np.nan], "mae_ci_high": [5.2, 4.8, 7.0, np.nan]})
    small = groups.assign(mae=[5.0, 4.5, 6.5, 9.0], small=[False, False, True, True])
    axes = group_bars_figure(small, "race").axes[0]
    assert [p.get_hatch() for p in axes.patches] == [None, "///", "///"]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["white (n=1,000)", "black (n=290), small", "asian (n=10), small"]
    shown = group_bars_figure(groups, "race").axes[0]
    assert [p.get_width() for p in shown.patches] == [4.5, 6.5]                   # asian has no MAE: no bar
    assert [line.get_xdata()[0] for line in shown.lines if line.get_linestyle() == "--"] == [5.0]


def test_write_figures_draws_only_what_the_evaluation_holds(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from stages.lib.reporting import figures

    drawn = {}

    def keep(figure, path):                  # no PNG rendered: the choice of figures is what is judged here
        drawn[path.name] = [axis.get_title() for axis in figure.axes]
        plt.close(figure)
        return path

    monkeypatch.setattr(figures, "save_figure", keep)
    with_race = evaluate(TOY, [0, 16, 31, 46, 61], Bootstrap(resamples=0), 2)
    written = write_figures(with_race, tmp_path, "toy", min_count=2)
    assert {"predicted_vs_actual", "mae_by_race", "mae_by_gender", "mae_by_race_x_age_band",
            "gender_accuracy_race_gender"} <= set(written)
    assert written["mae_by_race"] == tmp_path / "mae_by_race.png" and set(drawn) == {f"{n}.png" for n in written}
    assert drawn["mae_by_race_x_age_band.png"][0].startswith("toy: MAE (years) by age band × race")
    without_race = write_figures(evaluate(TOY.assign(race=None), [0, 16, 31, 46, 61], Bootstrap(resamples=0), 2),
                                 tmp_path, "toy")
    assert not any("race" in name for name in without_race) and "mae_by_gender" in without_race


def test_more_than_ten_experiments_get_distinct_colours():
    from stages.lib.reporting.figures import distinct_colours
    assert len(set(distinct_colours(10))) == 10 and len(set(distinct_colours(13))) == 13
    assert distinct_colours(3) == distinct_colours(10)[:3]     # tab10 while it suffices


def test_the_r11_heatmap_prints_each_cells_interval_and_no_two_texts_meet(tmp_path):
    evaluation = evaluate(TOY, [0, 16, 31, 46, 61], Bootstrap(resamples=20), 1)
    written = write_figures(evaluation, tmp_path, "toy")
    assert "gender_accuracy_race_gender" in written
    values = pd.DataFrame({"female": [45.8, 97.0]}, index=["black", "white"])
    counts = pd.DataFrame({"female": [120, 300]}, index=values.index)
    bounds = (values - 8, values + 2)
    figure = heatmap_figure(values, counts, "accuracy", "{:.0f}%", intervals=bounds)
    assert sorted(t.get_text() for t in figure.axes[0].texts) == ["46%\n[38–48]\nn=120", "97%\n[89–99]\nn=300"]
    assert overlapping_texts(figure) == []


def test_labels_of_points_on_top_of_one_another_are_moved_apart():
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4, 3))
    for name in ("retrained", "balanced", "group_dro", "last_layer"):
        axis.plot([1.0], [2.0], "o")
        axis.annotate(name, (1.0, 2.0), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axis.set(xlim=(0, 3), ylim=(0, 4))
    assert len(overlapping_texts(figure)) >= 6                     # all four on one spot
    separate_labels(figure)
    assert overlapping_texts(figure) == []
