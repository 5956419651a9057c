"""The study's figures (matplotlib PNGs) and the same data as DVC plot files.

Each `*_figure` function takes tidy data (from `stages.lib.evaluation.disaggregation` and `groups`) and returns a matplotlib Figure;
`save_figure` writes it and closes it. Every legend or tick label carries its group's n. The
`dvc_*` functions reshape the same data into small CSV tables with fixed columns, so that a
`plots:` declaration in dvc.yaml (x/y names) stays valid across experiments and `dvc plots diff`
can overlay them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Annotation, Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from stages.lib.core.labels import GENDERS, RACES, band_labels  # noqa: E402
from stages.lib.evaluation.curves import pivot  # noqa: E402

plt.rcParams.update({
    "font.size": 11, "axes.titlesize": 13, "axes.labelsize": 11, "legend.fontsize": 9.5,
    "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110, "savefig.bbox": "tight",
})
GROUP_COLOURS = {
    "male": "#1f77b4", "female": "#d62728",
    "white": "#7f7f7f", "black": "#2ca02c", "asian": "#ff7f0e", "indian": "#9467bd", "others": "#8c564b",
}
MIN_POINTS = 10   # age bins with fewer faces are not drawn in the error-by-age lines


def save_figure(figure: Figure, path: Path) -> Path:
    """Write a PNG (parents created) and release the figure's memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _n(value) -> str:
    return f"{int(value):,}"


# ---------------------------------------------------------------------------------------------------
# Labels that never sit on one another


def text_boxes(figure: Figure) -> list[tuple[Text, object]]:
    """Every visible, non-empty text of the figure with its box in display pixels, as the renderer
    draws it (tick labels, titles, legends, annotations, cell values), after a draw has laid them out;
    texts wholly outside the figure (ticks past the axis limits) are not drawn and not counted."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    undrawn = _ticks_out_of_view(figure)
    boxes = [(text, text.get_window_extent(renderer)) for text in figure.findobj(Text)
             if text.get_visible() and text.get_text().strip() and text.figure is not None and text not in undrawn]
    return [(text, box) for text, box in boxes if box.overlaps(figure.bbox)]


def _ticks_out_of_view(figure: Figure) -> set:
    """Tick labels of ticks past their axis's limits: they exist, but the renderer never draws them."""
    hidden = set()
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(high - low), 1.0)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - slack <= tick.get_loc() <= high + slack:
                    hidden.update({tick.label1, tick.label2})
    return hidden


def overlapping_texts(figure: Figure) -> list[tuple[str, str]]:
    """The pairs of texts whose drawn boxes intersect (empty where every label reads on its own)."""
    boxes = text_boxes(figure)
    return [(a.get_text(), b.get_text()) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:]
            if box_a.overlaps(box_b)]


def _marker_box(label: Annotation, half: float = 5.0):
    """The box (display pixels) of the point an annotation labels."""
    x, y = label.axes.transData.transform(label.xy)
    return Bbox.from_extents(x - half, y - half, x + half, y + half)


# Offsets (points) tried in turn for a point's label: right of it, then left, stepping up and down.
LABEL_OFFSETS = [(side * 6, rise) for rise in (4, -14, 16, -26, 28, -38, 40, -50, 52, -62) for side in (1, -1)]


def separate_labels(figure: Figure) -> None:
    """Move each annotation (a point's label, in offset points) to the first of LABEL_OFFSETS where its
    box meets no other text and stays inside its axes; call once the layout is final."""
    renderer = figure.canvas.get_renderer()
    labels = [t for t in figure.findobj(Annotation) if t.get_visible() and t.get_text().strip()]
    placed = [box for text, box in text_boxes(figure) if text not in labels]
    placed += [_marker_box(label) for label in labels]   # a label never covers another point
    for label in labels:
        frame = label.axes.get_window_extent(renderer) if label.axes else None
        for dx, dy in LABEL_OFFSETS:
            label.xyann = (dx, dy)
            label.set_horizontalalignment("left" if dx > 0 else "right")
            box = label.get_window_extent(renderer)
            inside = frame is None or (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0
                                       and box.y1 <= frame.y1)
            if inside and not any(box.overlaps(other) for other in placed):
                break
        placed.append(label.get_window_extent(renderer))


def predicted_vs_actual_figure(curves: pd.DataFrame, title: str,
                               legend: Mapping[str, str] | None = None) -> Figure:
    """Mean predicted age per true age, one line per `series`, its interquartile band, the identity line."""
    figure, axes = plt.subplots(figsize=(8.5, 8))
    palette = plt.get_cmap("tab10")
    for index, (series, curve) in enumerate(curves.groupby("series", sort=False)):
        colour = palette(index % 10)
        label = (legend or {}).get(series, f"{series} (n={_n(curve['n'].sum())})")
        axes.fill_between(curve["age"], curve["q25"], curve["q75"], color=colour, alpha=0.15, linewidth=0)
        axes.plot(curve["age"], curve["mean_pred"], color=colour, linewidth=2, label=label)
    low = min(curves["age"].min(), curves["q25"].min()) - 2
    high = max(curves["age"].max(), curves["q75"].max()) + 2
    axes.plot([low, high], [low, high], color="black", linestyle="--", linewidth=1, label="perfect prediction")
    axes.set(title=title, xlabel="true age (years)", ylabel="predicted age (years)", xlim=(low, high),
             ylim=(low, high), aspect="equal")
    axes.legend(title="line: mean prediction; band: 25th–75th percentile", loc="upper left")
    return figure


FIGURE_WIDTH_INCHES = 14.0   # at figure.dpi 110 and a tight box: about 1,550 px, legible at 1,600 px
SPIKE_RATIO = 5.0            # a loss panel whose largest value exceeds its median this much gets a log axis


def distinct_colours(count: int) -> list:
    """`count` colours, none repeated up to 20: matplotlib's tab10, or tab20 past ten (then cycling)."""
    palette = plt.get_cmap("tab10" if count <= 10 else "tab20")
    return [palette(index % palette.N) for index in range(count)]


def loss_curves_figure(histories: Mapping[str, pd.DataFrame], title: str = "Training and validation loss") -> Figure:
    """One panel per loss (`loss`, or `age_loss`, `gender_loss`, ...), one colour per experiment;
    solid: training, dashed: validation, dot: the best validation epoch. Panels wrap two to a row so
    the figure stays about FIGURE_WIDTH_INCHES wide; a panel where one curve spikes far above the
    rest (an adversary's loss) gets a log axis, so the spike does not flatten the others."""
    names = list(histories)
    heads = list(dict.fromkeys(c.removeprefix("val_") for h in histories.values() for c in loss_columns(h)))
    columns = min(len(heads), 2)
    rows = -(-len(heads) // columns)
    figure, panels = plt.subplots(rows, columns, figsize=(FIGURE_WIDTH_INCHES, 5.0 * rows), squeeze=False)
    colours = distinct_colours(len(names))
    for panel, head in zip(panels.flat, heads):
        drawn = []
        for index, name in enumerate(names):
            history, colour = histories[name], colours[index]
            if head in history:
                panel.plot(history["epoch"], history[head], color=colour, linewidth=1.6, label=name)
                drawn.append(history[head])
            if f"val_{head}" in history and history[f"val_{head}"].notna().any():
                values = history[f"val_{head}"]
                panel.plot(history["epoch"], values, color=colour, linestyle="--", linewidth=1.6,
                           label=None if head in history else name)
                best = values.idxmin()
                panel.scatter(history.loc[best, "epoch"], values[best], color=colour, zorder=3, s=40,
                              edgecolor="black")
                drawn.append(values)
        scale = _loss_scale(drawn)
        panel.set_yscale(scale)
        panel.set(title=head.replace("_", " ") + (" (log axis)" if scale == "log" else ""), xlabel="epoch",
                  ylabel="loss")
    for panel in list(panels.flat)[len(heads):]:
        panel.remove()
    handles = {h.get_label(): h for axis in figure.axes for h in axis.get_legend_handles_labels()[0]}
    figure.legend(list(handles.values()), list(handles), title="experiment", loc="lower center",
                  ncol=min(len(handles), 5), bbox_to_anchor=(0.5, -0.02 - 0.035 * (-(-len(handles) // 5))))
    figure.suptitle(f"{title} (solid: training, dashed: validation, dot: best validation epoch)", fontsize=13)
    figure.tight_layout()
    return figure


def _loss_scale(curves: list[pd.Series]) -> str:
    """`log` where the largest loss drawn exceeds the median one SPIKE_RATIO times (all positive), else `linear`."""
    values = pd.concat(curves).dropna().to_numpy(dtype=float) if curves else np.empty(0)
    if values.size == 0 or values.min() <= 0:
        return "linear"
    return "log" if values.max() > SPIKE_RATIO * np.median(values) else "linear"


def loss_columns(history: pd.DataFrame) -> list[str]:
    """The loss columns of a training history: `loss`, `val_loss`, `age_loss`, `val_age_loss`, ..."""
    return [c for c in history.columns if c != "epoch" and "loss" in c]


def share_figure(shares: pd.DataFrame, title: str) -> Figure:
    """Share of faces per age bin and gender (grouped bars, R5)."""
    width = float(np.diff(np.sort(shares["age_bin"].unique()))[:1].min()) if shares["age_bin"].nunique() > 1 else 5.0
    genders = [g for g in GENDERS if g in set(shares["gender"])]
    figure, axes = plt.subplots(figsize=(10, 5.5))
    bar = width / (len(genders) + 0.5)
    for index, gender in enumerate(genders):
        rows = shares[shares["gender"] == gender]
        axes.bar(rows["age_bin"] + index * bar, rows["share"] * 100, width=bar, align="edge",
                 color=GROUP_COLOURS.get(gender), label=f"{gender} (n={_n(rows['n'].sum())})")
    axes.set(title=title, xlabel=f"true age ({width:g}-year bins, labelled by lower edge)",
             ylabel="share of all faces (%)")
    axes.legend()
    return figure


def error_by_age_figure(table: pd.DataFrame, title: str, min_points: int = MIN_POINTS,
                        order: Sequence[str] | None = None) -> Figure:
    """Mean signed error and MAE per age bin, one line per group (R7, R8); thin bins left out."""
    shown = table[table["n"] >= min_points]
    groups = [g for g in (order or _vocabulary_order(table["group"].unique())) if g in set(table["group"])]
    figure, (signed, absolute) = plt.subplots(1, 2, figsize=(13, 5.2), sharex=True)
    for group in groups:
        rows = shown[shown["group"] == group]
        total = table.loc[table["group"] == group, "n"].sum()
        style = {"color": GROUP_COLOURS.get(group), "marker": "o", "markersize": 3.5, "linewidth": 1.8}
        signed.plot(rows["age_bin"], rows["mean_error"], label=f"{group} (n={_n(total)})", **style)
        absolute.plot(rows["age_bin"], rows["mae"], label=f"{group} (n={_n(total)})", **style)
    signed.axhline(0, color="black", linewidth=1)
    signed.set(title="mean (predicted − true): + over-, − under-estimated", xlabel="true age (bin lower edge)",
               ylabel="years")
    absolute.set(title="mean absolute error", xlabel="true age (bin lower edge)", ylabel="years")
    signed.legend()
    figure.suptitle(f"{title} (bins with fewer than {min_points} faces not drawn)", fontsize=13)
    figure.tight_layout()
    return figure


def group_bars_figure(groups: pd.DataFrame, attribute: str, metric: str = "mae", title: str = "",
                      *, confidence: float = 0.95) -> Figure:
    """One horizontal bar per group of `attribute` with its CI whisker, n in the label, the overall value
    as a line; small groups hatched."""
    rows = groups[(groups["attribute"] == attribute) & groups[metric].notna()].reset_index(drop=True)
    overall = groups.loc[groups["attribute"] == "all", metric].iloc[0]
    label = {"mae": "MAE (years)", "rmse": "RMSE (years)", "gender_accuracy": "gender accuracy",
             "mean_error": "mean (predicted − true), years"}[metric]
    figure, axes = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.8))
    positions = np.arange(len(rows))[::-1]
    low, high = rows.get(f"{metric}_ci_low"), rows.get(f"{metric}_ci_high")
    whiskers = None
    if low is not None and low.notna().any():
        whiskers = np.vstack([rows[metric] - low, high - rows[metric]]).clip(min=0)
    colours = [GROUP_COLOURS.get(g.split("*")[0], "#4c72b0") for g in rows["group"]]
    bars = axes.barh(positions, rows[metric], xerr=whiskers, color=colours, alpha=0.85, capsize=3,
                     error_kw={"elinewidth": 1.2})
    for bar_patch, small in zip(bars, rows["small"]):
        if small:
            bar_patch.set_hatch("///")
            bar_patch.set_alpha(0.4)
    axes.set_yticks(positions, [f"{g.replace('*', ' × ')} (n={_n(n)}){', small' if s else ''}"
                                for g, n, s in zip(rows["group"], rows["n"], rows["small"])])
    readable = attribute.replace("*", " × ").replace("age_band", "age band")
    heading = f"{label} by {readable}"
    if pd.notna(overall):
        axes.axvline(overall, color="black", linestyle="--", linewidth=1)
        heading += f"\nwhiskers: {confidence:.0%} CI; dashed line: all faces ({overall:.3g})"
    axes.set(title=f"{title}: {heading}" if title else heading, xlabel=label)
    axes.grid(axis="y", visible=False)
    return figure


SMALL_CELL = "#d9d9d9"   # heatmap cells too small to judge: grey, their value in grey italics


def heatmap_figure(values: pd.DataFrame, counts: pd.DataFrame, title: str, value_format: str = "{:.1f}",
                   *, diverging: bool = False, colour_label: str = "", min_count: int = 0,
                   intervals: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> Figure:
    """An annotated table as a heatmap: each cell shows its value (with its interval where `intervals`,
    (low, high) tables shaped like `values`, are given) and n; empty cells stay blank; cells of fewer
    than `min_count` faces are grey (not coloured by their value, which is too uncertain to paint at
    full strength) and left out of the colour scale, which spans the other cells' values."""
    data = values.to_numpy(dtype=float)
    sizes = counts.reindex(index=values.index, columns=values.columns).to_numpy(dtype=float)
    small = np.isfinite(data) & (np.nan_to_num(sizes) < min_count)
    shown = np.where(small, np.nan, data)
    tall = 0.95 if intervals is not None else 0.62
    figure, axes = plt.subplots(figsize=(1.6 * values.shape[1] + 3, tall * values.shape[0] + 2))
    finite = shown[np.isfinite(shown)]
    if diverging:
        # the colour scale follows cells of at least MIN_POINTS faces; thinner, extreme cells saturate
        sizeable = shown[np.isfinite(shown) & (np.nan_to_num(sizes) >= MIN_POINTS)]
        reference = sizeable if sizeable.size else finite
        limit = float(np.abs(reference).max()) if reference.size else 1.0
        image = axes.imshow(shown, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    else:
        image = axes.imshow(shown, cmap="viridis", aspect="auto",
                            **({"vmin": finite.min(), "vmax": finite.max()} if finite.size else {}))
    if small.any():
        axes.imshow(np.where(small, 1.0, np.nan), cmap=matplotlib.colors.ListedColormap([SMALL_CELL]),
                    aspect="auto", vmin=0, vmax=1)
    for (row, column), value in np.ndenumerate(data):
        if np.isfinite(value):
            count = counts.iat[row, column]
            greyed = small[row, column]
            axes.text(column, row, _cell_text(value, value_format, count, _cell_interval(intervals, row, column)),
                      ha="center", va="center", fontsize=9,
                      color="#555555" if greyed else _text_colour(image, value),
                      fontstyle="italic" if greyed else "normal")
    axes.set_xticks(range(values.shape[1]), [str(c) for c in values.columns], rotation=30, ha="right")
    axes.set_yticks(range(values.shape[0]), [str(i) for i in values.index])
    note = f"\ngrey: under {min_count} faces, not judged" if small.any() else ""
    axes.set(title=title + note, xlabel=str(values.columns.name or "").replace("_", " "),
             ylabel=str(values.index.name or "").replace("_", " "))
    axes.grid(False)
    if finite.size:                      # every cell greyed: no colour scale to explain
        figure.colorbar(image, ax=axes, label=colour_label)
    return figure


def _cell_interval(intervals, row: int, column: int) -> tuple[float, float] | None:
    if intervals is None:
        return None
    low, high = (table.iat[row, column] for table in intervals)
    return None if pd.isna(low) or pd.isna(high) else (float(low), float(high))


def _cell_text(value: float, value_format: str, count, interval: tuple[float, float] | None) -> str:
    """'77%' / '[70–84]' / 'n=120': the value, its interval where known, and n."""
    shown = value_format.format(value)
    if interval is not None:
        bare = value_format.replace("%", "")
        shown += f"\n[{bare.format(interval[0])}–{bare.format(interval[1])}]"
    return f"{shown}\nn={_n(count)}"


def _text_colour(image, value) -> str:
    red, green, blue, _ = image.cmap(image.norm(value))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def experiments_figure(comparison: pd.DataFrame, confidence: float = 0.95) -> Figure:
    """MAE and RMSE per experiment (bars) and test set (colours), CI whiskers, the value past each whisker."""
    datasets = list(dict.fromkeys(comparison["dataset"]))
    experiments = list(dict.fromkeys(comparison["experiment"]))
    figure, panels = plt.subplots(1, 2, figsize=(13, 0.55 * len(experiments) * len(datasets) + 2.5), sharey=True)
    palette = plt.get_cmap("tab10")
    height = 0.8 / len(datasets)
    for panel, metric in zip(panels, ("mae", "rmse")):
        for index, dataset in enumerate(datasets):
            rows = comparison[comparison["dataset"] == dataset].set_index("experiment").reindex(experiments)
            positions = np.arange(len(experiments))[::-1] + (len(datasets) - 1 - index) * height - 0.4 + height / 2
            low, high = rows[f"{metric}_ci_low"].fillna(rows[metric]), rows[f"{metric}_ci_high"].fillna(rows[metric])
            whiskers = np.vstack([rows[metric] - low, high - rows[metric]]).clip(min=0)
            panel.barh(positions, rows[metric], height=height * 0.9, xerr=np.nan_to_num(whiskers), capsize=3,
                       color=palette(index % 10), label=f"{dataset} (n={_n(rows['n'].max())})")
            for y, value, end in zip(positions, rows[metric], high):
                if pd.notna(value):
                    panel.text(end, y, f"  {value:.2f}", va="center", fontsize=9)
        panel.set(title=metric.upper() + " (years)", xlabel="years")
        panel.set_xlim(0, comparison[f"{metric}_ci_high"].fillna(comparison[metric]).max() * 1.15)
        panel.grid(axis="y", visible=False)
    panels[0].set_yticks(np.arange(len(experiments))[::-1], experiments)
    panels[1].legend(title="test set", loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.suptitle(f"Experiments: test error with {confidence:.0%} CI", fontsize=13)
    figure.tight_layout()
    return figure


def _vocabulary_order(groups) -> list[str]:
    known = list(GENDERS) + list(RACES)
    return sorted(groups, key=lambda g: (known.index(g) if g in known else len(known), g))


def write_figures(evaluation, folder: Path, title: str, *, min_count: int = 0) -> dict[str, Path]:
    """Every figure the evaluation's data allows, as PNGs in `folder`; name -> path. Heatmap cells of
    fewer than `min_count` faces are greyed."""
    folder = Path(folder)
    tables, groups = evaluation.tables, evaluation.groups
    bands = band_labels(evaluation.edges)
    written: dict[str, Path] = {}

    def save(name: str, figure: Figure) -> None:
        written[name] = save_figure(figure, folder / f"{name}.png")

    overall = evaluation.overall
    save("predicted_vs_actual", predicted_vs_actual_figure(
        tables["predicted_vs_actual"], f"{title}: mean predicted vs true age",
        {s: f"{s} (n={_n(overall['n'])}" + (f", MAE {overall['mae']:.2f})" if overall.get("mae") is not None else ")")
         for s in tables["predicted_vs_actual"]["series"].unique()}))
    if "share_by_age_gender" in tables:
        save("share_by_age_gender", share_figure(tables["share_by_age_gender"], f"{title}: faces by age and gender"))
    for attribute in ("gender", "race"):
        if f"error_by_age_{attribute}" in tables:
            save(f"error_by_age_{attribute}", error_by_age_figure(
                tables[f"error_by_age_{attribute}"], f"{title}: error across age by {attribute}"))
    for attribute in ("race", "gender", "age_band", "race*gender", "gender*age_band"):
        if (groups["attribute"] == attribute).any():
            save(f"mae_by_{attribute.replace('*', '_x_')}", group_bars_figure(groups, attribute, "mae", title,
                                                                                  confidence=evaluation.confidence))
    race_band = groups[groups["attribute"] == "race*age_band"]
    if not race_band.empty:
        split = race_band.assign(race=race_band["group"].str.split("*").str[0],
                                 age_band=race_band["group"].str.split("*").str[1])
        values, counts = pivot(split, "age_band", ["race"], "mae", index_order=bands)
        save("mae_by_race_x_age_band", heatmap_figure(values, counts, f"{title}: MAE (years) by age band × race",
                                                      colour_label="MAE (years)", min_count=min_count))
    signed = tables.get("signed_error_by_predicted_band")
    columns = [c for c in ("race", "gender") if signed is not None and c in signed.columns]
    if columns:
        values, counts = pivot(signed, "predicted_band", columns, "mean_error", index_order=bands)
        save("signed_error_by_predicted_band", heatmap_figure(
            values, counts, f"{title}: mean (predicted − true) by predicted-age band", diverging=True,
            colour_label="years (+ over-, − under-estimated)", min_count=min_count))
    race_gender = groups[(groups["attribute"] == "race*gender") & groups["gender_accuracy"].notna()]
    if not race_gender.empty:
        split = race_gender.assign(race=race_gender["group"].str.split("*").str[0],
                                   gender=race_gender["group"].str.split("*").str[1])
        values, counts = pivot(split, "race", ["gender"], "gender_accuracy", index_order=list(RACES))
        bounds = tuple(pivot(split, "race", ["gender"], f"gender_accuracy_ci_{end}", index_order=list(RACES))[0].reindex_like(values)
                       * 100 for end in ("low", "high"))
        save("gender_accuracy_race_gender", heatmap_figure(
            values * 100, counts, f"{title}: gender accuracy (%), {evaluation.confidence:.0%} Wilson interval",
            "{:.0f}%", colour_label="accuracy (%)", min_count=min_count, intervals=bounds))
    women = tables.get("women_gender_accuracy")
    if women is not None and (women["attribute"] == "race*age_band").any():
        rows = women[women["attribute"] == "race*age_band"]
        split = rows.assign(race=rows["group"].str.split("*").str[0], age_band=rows["group"].str.split("*").str[1])
        values, counts = pivot(split, "age_band", ["race"], "gender_accuracy", index_order=bands)
        save("women_gender_accuracy", heatmap_figure(values * 100, counts,
                                                     f"{title}: gender accuracy for women (%)", "{:.0f}%",
                                                     colour_label="accuracy (%)", min_count=min_count))
    return written
