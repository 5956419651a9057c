"""The report's section "Published models side by side": every model of params `audit_models` on the
same test faces (the audit_models stage's outputs, stages/lib/evaluation/published_audit.py).

Per test set and model: n, the age figure (MAE; on a set labelled with bands only, band accuracy; for a
band model, band and one-off band accuracy), gender accuracy, the worst race × gender group and how far
it trails the best, each with its interval. The models predicted the same faces, so every comparison
between two of them is paired: `worst_groups.summarise_experiments` draws one set of group-stratified
resamples per test set and takes each model's statistics, and their difference, over the same draws.
Each model's sentence is built from those intervals of differences: "higher", "lower", "wider",
"narrower" only where the interval excludes 0.

Figures: gender accuracy by race × gender, one panel per model and test set, n in each cell, cells
under evaluate.min_group_size greyed (Gender Shades' layout); overall against worst-group error with
every model on it (`mitigation.tradeoff_figure`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from stages.lib.core.labels import GENDERS, RACES
from stages.lib.core.params import Params
from stages.lib.evaluation.audit_results import CARD_FILE, FROM_PASS, METRICS_FILE, PREDICTIONS_FILE
from stages.lib.evaluation.source_bands import ages_are_bands
from stages.lib.evaluation.intervals import Bootstrap, direction
from stages.lib.evaluation.multiplicity import adjust_families
from stages.lib.evaluation.results import bootstrap_from
from stages.lib.evaluation.worst_groups import summarise_experiments
from stages.lib.reporting.figures import save_figure
from stages.lib.reporting.markdown import Markdown, difference, p_value_text, percent, with_interval
from stages.lib.reporting.mitigation import tradeoff_figure

BAND_RULE = ("True ages are mapped onto a band model's bands by the nearest band, the distance measured to its "
             "nearer end, a tie going to the older band (Adience's gaps: 3 → 4-6, 7 → 8-12, 13 → 8-12, 14 → 15-20, "
             "21-22 → 15-20, 23-24 → 25-32, 33-34 → 25-32, 35-37 → 38-43, 44-45 → 38-43, 46-47 → 48-53, "
             "54-56 → 48-53, 57-59 → 60-100); a set labelled with bands only (FairFace) by its band's stored "
             "midpoint. Band accuracy: the predicted band is the face's; one-off: it is the face's or a neighbour.")
# statistic -> (label, as percentage points, words for above / below zero)
COMPARED = {
    "gender_accuracy": ("gender accuracy", True, ("higher", "lower")),
    "accuracy_gap": ("race × gender accuracy gap", True, ("wider", "narrower")),
    "mae": ("MAE", False, ("higher", "lower")),
}


@dataclass(frozen=True)
class AuditedModel:
    name: str
    card: dict
    predictions: pd.DataFrame          # the audit's predictions table, test rows


def load_audited(params: Params) -> tuple[list[AuditedModel], list[str]]:
    """The audited models in params' order, and the listed ones without outputs yet."""
    found, missing = [], []
    for name in params.audit_models:
        folder = params.paths.audit / name
        if not (folder / CARD_FILE).exists():
            missing.append(name)
            continue
        predictions = pd.read_parquet(folder / PREDICTIONS_FILE)
        found.append(AuditedModel(name, json.loads((folder / CARD_FILE).read_text()),
                                  predictions[predictions["split"] == "test"]))
    return found, missing


# ---------------------------------------------------------------------------------------------------
# Tables


def paired_summary(models: Sequence[AuditedModel], dataset: str, bootstrap: Bootstrap,
                   min_group_size: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(each model's statistics, each pair's paired differences) on one test set.

    The first: worst_groups' SUMMARY_COLUMNS, one row per model and statistic. The second: `model`,
    `other`, `statistic`, `difference` (model − other) and its interval, each unordered pair once."""
    frames = {m.name: m.predictions[m.predictions["dataset"] == dataset] for m in models
              if (m.predictions["dataset"] == dataset).any()}
    names = list(frames)
    if not names:
        return pd.DataFrame(), pd.DataFrame()
    values, pairs = None, []
    for position, reference in enumerate(names):
        rows, left_out = summarise_experiments(frames, reference, bootstrap, min_group_size)
        values = rows[rows["experiment"] == reference] if values is None else pd.concat(
            [values, rows[rows["experiment"] == reference]], ignore_index=True)
        for other in names[position + 1:]:
            if other in left_out.get(dataset, []):
                continue
            changes = rows[rows["experiment"] == other]
            pairs.append(pd.DataFrame({"model": other, "other": reference, "statistic": changes["statistic"],
                                       "difference": changes["change"], "ci_low": changes["change_ci_low"],
                                       "ci_high": changes["change_ci_high"], "p_value": changes["change_p"]}))
    if not pairs:
        return values, pd.DataFrame(columns=PAIR_COLUMNS)
    return values, adjusted_pairs(pd.concat(pairs, ignore_index=True), 1 - bootstrap.confidence)


PAIR_COLUMNS = ["model", "other", "statistic", "difference", "ci_low", "ci_high", "p_value", "adjustment",
                "p_adjusted", "significant", "tests"]


def adjusted_pairs(pairs: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """`pairs` with each difference's p-value adjusted over the pairs compared on the same statistic
    (multiplicity.adjust_families: Holm, Benjamini–Hochberg past ten), `significant` after it, and the
    family's size (`tests`)."""
    out = adjust_families(pairs.assign(family=pairs["statistic"]), alpha, eligible=pairs["p_value"].notna())
    out["tests"] = out.groupby("statistic")["p_value"].transform("count")
    return out[PAIR_COLUMNS]


def age_figure(model: AuditedModel, dataset: str, folder: Path) -> str:
    """The model's age figure on a test set: MAE, band accuracy on a set labelled with bands, or
    (a band model) its band and one-off band accuracy; never an MAE for the last two."""
    overall = json.loads((folder / "evaluation" / dataset / METRICS_FILE).read_text())
    if model.card.get("age_bands"):
        return f"band acc. {_proportion(overall, 'band_accuracy')}; one-off {_proportion(overall, 'one_off_accuracy')}"
    if ages_are_bands(overall):
        return f"band acc. {percent(overall.get('age_band_accuracy'))} (the set's own bands)"
    return f"MAE {with_interval(overall['mae'], overall['mae_ci_low'], overall['mae_ci_high'])}"


def side_by_side_table(models: Sequence[AuditedModel], values: pd.DataFrame, dataset: str, params: Params) -> pd.DataFrame:
    """One row per model on one test set."""
    ci = f"{params.evaluate.confidence:.0%} CI"
    rows = []
    for model in models:
        by = values[values["experiment"] == model.name].set_index("statistic")
        if by.empty:
            continue
        accuracy, worst, gap = (by.loc[s] for s in ("gender_accuracy", "worst_group_accuracy", "accuracy_gap"))
        rows.append({
            "model": model.name + (f" ({model.card['contrast']} contrast)" if model.card.get("contrast") else ""),
            "in-sample": model.card["test_sets"].get(dataset, "unknown"),
            "n": int(accuracy["n"]),
            f"age [{ci}]": age_figure(model, dataset, params.paths.audit / model.name),
            f"gender accuracy [{ci}]": with_interval(accuracy["value"], accuracy["ci_low"], accuracy["ci_high"],
                                                     as_percent=True),
            f"worst race × gender group [{ci}]": f"{worst['worst_group']}: " + with_interval(
                worst["value"], worst["ci_low"], worst["ci_high"], as_percent=True),
            f"gap to the best group [{ci}]": f"{_points(gap['value'], gap['ci_low'], gap['ci_high'])} "
                                             f"(vs {gap['best_group']})",
        })
    return pd.DataFrame(rows)


IN_SAMPLE = ("yes", "partly")   # a card's test_sets values that make a model's figures on that set in-sample


def in_sample_flags(models: Sequence[AuditedModel], dataset: str) -> dict[str, str]:
    """{model: ' (in-sample: partly)'} for the models whose training data held (some of) `dataset`'s faces:
    every ranking that holds one of them carries the flag."""
    return {m.name: f" (in-sample: {m.card['test_sets'][dataset]})" for m in models
            if m.card["test_sets"].get(dataset) in IN_SAMPLE}


def pairs_table(pairs: pd.DataFrame, flags: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per pair of models: each compared statistic's paired difference with its interval; a model
    named in `flags` (in_sample_flags) carries its flag."""
    flags = flags or {}
    rows = []
    for (model, other), group in pairs.groupby(["model", "other"], sort=False):
        by = group.set_index("statistic")
        row = {"models": f"{model}{flags.get(model, '')} − {other}{flags.get(other, '')}"}
        for statistic, (label, points, _) in COMPARED.items():
            if statistic in by.index and pd.notna(by.loc[statistic, "difference"]):
                entry = by.loc[statistic]
                row[label] = difference(entry["difference"], entry["ci_low"], entry["ci_high"], points=points)
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def _proportion(figures: Mapping, key: str) -> str:
    return with_interval(figures[key], figures[f"{key}_ci_low"], figures[f"{key}_ci_high"], as_percent=True)


def _points(value, low, high) -> str:
    """A gap in percentage points with its interval: '25.1 [19.8, 30.2] pts'."""
    shown = [f"{_tenths(100 * v):.1f}" for v in (value, low, high)]
    return f"{shown[0]} pts" if pd.isna(low) else f"{shown[0]} [{shown[1]}, {shown[2]}] pts"


def _tenths(value: float) -> float:
    """Rounded to 0.1, without a negative zero."""
    return round(float(value), 1) + 0.0


# ---------------------------------------------------------------------------------------------------
# Sentences


def compared_phrase(statistic: str, other: str, change, interval: tuple[float, float], *,
                    adjusted: tuple[bool, float, int] | None = None) -> str:
    """How a model stands against `other` on one statistic, from the paired interval of the difference;
    with `adjusted` (significant after adjustment, the adjusted p, the pairs compared), a difference must
    also survive the adjustment for the pairs compared to be called higher, lower, wider or narrower."""
    low, high = interval
    label, points, (above, below) = COMPARED[statistic]
    scale, unit = (100, " pts") if points else (1, " years")
    interval = (f"[{_tenths(scale * low):+.1f}, {_tenths(scale * high):+.1f}]" if pd.notna(low) else "(no interval)")
    side = direction(low, high)
    if side in ("above", "below") and adjusted is not None and not adjusted[0]:
        return (f"{label}: no difference from {other}'s shown after adjusting for the {adjusted[2]} pairs compared "
                f"({_tenths(scale * change):+.1f}{unit}, raw {interval}, adjusted p {p_value_text(adjusted[1])})")
    if side in ("above", "below"):
        shown = interval if adjusted is None else f"(raw {interval}, adjusted p {p_value_text(adjusted[1])})"
        return (f"{label} {above if side == 'above' else below} than {other}'s by {abs(_tenths(scale * change)):.1f}"
                f"{unit} {shown}")
    return f"{label}: no difference from {other}'s shown ({_tenths(scale * change):+.1f}{unit}, {interval})"


def model_sentence(model: AuditedModel, dataset: str, values: pd.DataFrame, pairs: pd.DataFrame, *,
                   flags: Mapping[str, str] | None = None) -> str:
    """One sentence on one model and test set: its gender accuracy, worst group and gap with their
    intervals, then each paired comparison with the other models, each in-sample one flagged (`flags`:
    in_sample_flags); a comparison involving an in-sample model is said not to rank them fairly."""
    flags = flags or {}
    by = values[values["experiment"] == model.name].set_index("statistic")
    accuracy, worst, gap = (by.loc[s] for s in ("gender_accuracy", "worst_group_accuracy", "accuracy_gap"))
    contrast = (f", a labelled {model.card['contrast']} contrast, not an independent estimate"
                if model.card.get("contrast") else "")
    text = (f"**{model.name}** on {dataset} (in-sample: {model.card['test_sets'].get(dataset, 'unknown')}{contrast}): gender "
            f"accuracy {with_interval(accuracy['value'], accuracy['ci_low'], accuracy['ci_high'], as_percent=True)}; "
            f"its worst race × gender group, {worst['worst_group']}, at "
            f"{with_interval(worst['value'], worst['ci_low'], worst['ci_high'], as_percent=True)}, "
            f"{_points(gap['value'], gap['ci_low'], gap['ci_high'])} below {gap['best_group']}")
    phrases = []
    for statistic in COMPARED:
        for other, change, low, high, adjusted in _against_others(pairs, model.name, statistic):
            phrases.append(compared_phrase(statistic, other + flags.get(other, ""), change, (low, high),
                                           adjusted=adjusted))
    flagged = [other for other in flags if other != model.name]
    own = model.name in flags
    caveat = ""
    if phrases and (flagged or own):
        whose = ([f"{model.name}'s own"] if own else []) + [f"{other}'s" for other in flagged]
        caveat = (f" ({' and '.join(whose)} figures on {dataset} are in-sample and flatter "
                  f"{'them' if len(whose) > 1 else 'it'}: the comparisons with "
                  f"{'it' if len(whose) == 1 else 'them'} do not rank fairly)")
    return text + (". On the same faces" + caveat + ": " + "; ".join(phrases) if phrases else "") + "."


def _against_others(pairs: pd.DataFrame, name: str, statistic: str) -> list[tuple]:
    """(other, model − other, low, high, adjustment or None) for every pair holding `name`; a pair stored
    the other way round is negated (its percentile interval negates exactly)."""
    rows = pairs[pairs["statistic"] == statistic]
    adjusted = (lambda r: (bool(r.significant), r.p_adjusted, int(r.tests))) if "significant" in rows else (lambda r: None)
    found = [(r.other, r.difference, r.ci_low, r.ci_high, adjusted(r)) for r in rows[rows["model"] == name].itertuples()]
    found += [(r.model, -r.difference, -r.ci_high, -r.ci_low, adjusted(r)) for r in rows[rows["other"] == name].itertuples()]
    return [entry for entry in found if pd.notna(entry[1])]


DESIGN_PAIR = ("faceres", "wide_resnet_imdb")   # both IMDB-Wiki-trained: identity body or none
CONTRAST_NOTE = ("{names}: audited only as a labelled in-sample contrast. Its card says it was trained on UTKFace, "
                 "so its UTKFace rows are in-sample (flagged on its row) and flatter it; set against its FairFace "
                 "rows (whose status is unknown) they show how much an in-sample test flatters a model. Its "
                 "figures are never an independent estimate and stay out of the findings.")


def data_or_design(pairs: pd.DataFrame, dataset: str) -> str:
    """"Data or design?": the two IMDB-Wiki-trained families (FaceRes: an identity body trained on
    VGGFace2; the WideResNet: none) on race × gender, from their paired differences after adjustment;
    '' where either was not audited on `dataset`. Says only what the intervals support."""
    if pairs.empty:
        return ""
    model, other = DESIGN_PAIR
    both = pairs[pairs["model"].isin(DESIGN_PAIR) & pairs["other"].isin(DESIGN_PAIR)]
    phrases = [compared_phrase(statistic, other, change, (low, high), adjusted=adjusted)
               for statistic in ("gender_accuracy", "accuracy_gap")
               for name, change, low, high, adjusted in _against_others(both, model, statistic) if name == other]
    if not phrases:
        return ""
    shown = [(r.significant, r.statistic) for r in both.itertuples() if r.statistic in ("gender_accuracy", "accuracy_gap")]
    verdict = ("The race × gender gaps differ after adjustment: with the training data held alike, something in the "
               "design (the identity body, or anything else that differs between the two: architecture, input size, "
               "framing) moves the gap; these faces cannot say which." if any(sig for sig, stat in shown
                                                                              if stat == "accuracy_gap")
               else "Their race × gender gaps are not shown to differ: on these faces the gap is no different with or "
                    "without an identity body, consistent with the training data setting it, but not proof of it.")
    return (f"**Data or design?** ({dataset}) {model} and {other} were both trained for age and gender on IMDB-Wiki; "
            f"{model} reads an identity embedding (VGGFace2), {other} none. On the same faces, {model}: "
            + "; ".join(phrases) + ". " + verdict)


# ---------------------------------------------------------------------------------------------------
# Figures


def race_gender_accuracy(predictions: pd.DataFrame) -> pd.DataFrame:
    """Gender accuracy and n (faces with a gender prediction) per race × gender group."""
    rows = predictions[predictions["race"].notna() & predictions["gender"].notna() & predictions["gender_pred"].notna()]
    right = (rows["gender_pred"] == rows["gender"]).astype(float)
    table = right.groupby([rows["race"], rows["gender"]]).agg(["mean", "size"]).rename(
        columns={"mean": "accuracy", "size": "n"})
    return table.reset_index()


def gender_shades_figure(cells: Mapping[tuple[str, str], pd.DataFrame], min_group_size: int) -> Figure:
    """Gender accuracy by race (rows) × gender (columns), one panel per (test set, model): test sets down,
    models across. Each cell shows its accuracy and n; cells under `min_group_size` faces are grey."""
    datasets = list(dict.fromkeys(d for d, _ in cells))
    models = list(dict.fromkeys(m for _, m in cells))
    figure, axes = plt.subplots(len(datasets), len(models), squeeze=False, layout="constrained",
                                figsize=(2.9 * len(models) + 1.4, 3.4 * len(datasets) + 0.8))
    scale = accuracy_scale(cells.values(), min_group_size)
    colours = lambda accuracy: plt.get_cmap("RdYlGn")(scale(accuracy))  # noqa: E731
    for row, dataset in enumerate(datasets):
        for column, model in enumerate(models):
            _accuracy_panel(axes[row][column], cells.get((dataset, model)), colours, min_group_size)
            axes[row][column].set_title(f"{model}\non {dataset}", fontsize=10)
            if column:
                axes[row][column].set_yticklabels([])
    image = plt.cm.ScalarMappable(norm=scale, cmap="RdYlGn")
    figure.colorbar(image, ax=axes, shrink=0.7, label="gender accuracy (grey: fewer than "
                                                        f"{min_group_size} faces)", format=lambda v, _: f"{v:.0%}")
    figure.suptitle("Gender accuracy by race × gender, each published model on the same test faces", fontsize=12)
    return figure


def accuracy_scale(tables, min_group_size: int) -> plt.Normalize:
    """A colour scale spanning the accuracies of the cells judged (at least `min_group_size` faces), so
    that every difference the cells print shows in their colours too (29% and 47% apart)."""
    judged = [a for table in tables if table is not None for a, n in zip(table["accuracy"], table["n"])
              if n >= min_group_size]
    low, high = (min(judged), max(judged)) if judged else (0.0, 1.0)
    return plt.Normalize(low, high if high > low else low + 0.01)


def _accuracy_panel(axis, table: pd.DataFrame | None, colours, min_group_size: int) -> None:
    axis.set_xlim(-0.5, len(GENDERS) - 0.5)
    axis.set_ylim(len(RACES) - 0.5, -0.5)
    axis.set_xticks(range(len(GENDERS)), GENDERS)
    axis.set_yticks(range(len(RACES)), RACES)
    axis.grid(False)
    cells = {} if table is None else {(r.race, r.gender): r for r in table.itertuples()}
    for y, race in enumerate(RACES):
        for x, gender in enumerate(GENDERS):
            cell = cells.get((race, gender))
            if cell is None:
                continue
            small = cell.n < min_group_size
            colour = (0.85, 0.85, 0.85, 1.0) if small else colours(cell.accuracy)
            axis.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, color=colour))
            dark = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] < 0.45
            axis.text(x, y, f"{cell.accuracy:.1%}\nn={int(cell.n):,}", ha="center", va="center", fontsize=9,
                      color="#555555" if small else "white" if dark else "black")


# ---------------------------------------------------------------------------------------------------
# The section


def published_models_section(md: Markdown, params: Params) -> None:
    """Write the section and its two figures (params.paths.figures)."""
    md.heading("Published models side by side", 2)
    models, missing = load_audited(params)
    if not models:
        md.paragraph("No published model audited: list registered ones under `audit_models` in params.yaml "
                     "(e.g. `[wide_resnet_imdb]`) and run `dvc repro audit_models`."
                     + (f" Listed but not audited yet: {', '.join(missing)}." if missing else ""))
        return
    confidence, bootstrap = params.evaluate.confidence, bootstrap_from(params)
    md.paragraph(f"Each model predicts the test faces of every evaluated set, framed and aligned as its own code "
                 f"does, and is evaluated as the experiments are. The models saw the same faces, so differences "
                 f"between them have paired intervals ({bootstrap.resamples:,} resamples, stratified by race × gender, "
                 f"{confidence:.0%}); accuracies here are from those resamples. Worst and best groups are race × "
                 f"gender groups of at least {params.evaluate.min_group_size} faces, named from each model's own "
                 "estimates. *In-sample*: whether the set's faces were in the model's training data, as its card says.")
    md.bullets(f"**{m.name}**: {m.card['family']}; weights: {m.card['source']}; trained on {m.card['trained_on']}"
               + (f"; predicts age bands {', '.join(m.card['age_bands'])}" if m.card.get("age_bands") else "")
               for m in models)
    if any(m.card.get("age_bands") for m in models):
        md.paragraph(BAND_RULE)
    from_pass = next((m.name for m in models if m.card.get("read_from") == FROM_PASS), None)
    if from_pass is not None:
        md.paragraph(f"{from_pass} is also this run's backbone: the features pass reads and frames every crop as "
                     "its published code does, so its rows here are read from that pass and are the `published` "
                     "experiment's answers, face for face.")
    elif params.backbone.name in {m.name for m in models}:
        md.paragraph(f"{params.backbone.name} is also this run's backbone, whose own outputs are the `published` "
                     "experiment. There the features pass reads every crop the one way it reads them for any "
                     "backbone (its JPEG decoder and resize); here the model's own code reads them (OpenCV). The two "
                     "readings give slightly different pixels, so single faces' answers and the figures below can "
                     "differ a little from that experiment's.")
    contrasts = [m for m in models if m.card.get("contrast")]
    if contrasts:
        md.paragraph(CONTRAST_NOTE.format(names=", ".join(m.name for m in contrasts)))
    if missing:
        md.paragraph(f"Listed but not audited yet: {', '.join(missing)}.")
    audited = {d for m in models for d in m.predictions["dataset"]}
    datasets = [d for d in params.roles.evaluate if d in audited] + sorted(audited - set(params.roles.evaluate))
    panels, cells = {}, {}
    for dataset in datasets:
        values, pairs = paired_summary(models, dataset, bootstrap, params.evaluate.min_group_size)
        shown = [m for m in models if (values["experiment"] == m.name).any()]
        md.heading(f"On {dataset}", 3)
        md.table(side_by_side_table(shown, values, dataset, params), f"{dataset}: each model on the same test faces")
        flags = in_sample_flags(shown, dataset)
        if not pairs.empty:
            md.table(pairs_table(pairs, flags), f"{dataset}: paired differences between models (row − column model), raw "
                                         f"{confidence:.0%} CI; accuracy in percentage points. The sentences below "
                                         "call a difference only where it survives the adjustment for the pairs "
                                         "compared on its statistic")
        md.bullets(model_sentence(m, dataset, values, pairs, flags=flags) for m in shown)
        design = data_or_design(pairs, dataset)
        if design:
            md.paragraph(design)
        panels[dataset] = values
        cells.update({(dataset, m.name): race_gender_accuracy(m.predictions[m.predictions["dataset"] == dataset])
                      for m in shown})
    figures = params.paths.figures
    md.figure(save_figure(gender_shades_figure(cells, params.evaluate.min_group_size),
                          figures / "published_gender_by_race_gender.png"),
              "Gender accuracy by race × gender per published model and test set; n in each cell, grey: fewer "
              f"than {params.evaluate.min_group_size} faces.")
    md.figure(save_figure(tradeoff_figure(panels, confidence), figures / "published_overall_vs_worst.png"),
              f"Overall against worst-group error per published model and test set; whiskers: {confidence:.0%} CI. "
              "MAE only where ages are exact and the model predicts years.")
