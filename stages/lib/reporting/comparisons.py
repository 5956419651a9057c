"""Report sections that set two things side by side: backbones (is the bias in the embedding?) and
splits (how much does a split that lets one person into train and test flatter the metrics?).

Pure table builders over `Evaluation`s and split.json's leakage figures, then the section writers.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from stages.lib.core.schema import BAND_COLUMN
from stages.lib.evaluation.groups import Evaluation
from stages.lib.evaluation.source_bands import ages_are_bands
from stages.lib.evaluation.intervals import Bootstrap, direction, paired_mean_gap, paired_p_value
from stages.lib.evaluation.multiplicity import holm
from stages.lib.reporting.markdown import Markdown, difference, number, p_value_text, percent, with_interval

COMPARED_ATTRIBUTES = ("race", "gender", "age_band", "race*gender")


def _mae(row, digits: int = 2) -> str:
    return with_interval(row["mae"], row["mae_ci_low"], row["mae_ci_high"], digits)


def _accuracy(row) -> str:
    if pd.isna(row["gender_accuracy"]):
        return ""
    return with_interval(row["gender_accuracy"], row["gender_accuracy_ci_low"], row["gender_accuracy_ci_high"],
                         as_percent=True)


def side_by_side_groups(evaluations: Mapping[str, Evaluation], attributes=COMPARED_ATTRIBUTES) -> pd.DataFrame:
    """One row per group of the first model (overall first), for each compared model `<name> MAE` and
    `<name> gender acc.` with their CIs, and the group's size (the models were evaluated on the same faces).
    Where ages are bands (FairFace) the MAE is left blank: its age-band accuracy stands instead."""
    frames = []
    for name, evaluation in evaluations.items():
        groups = evaluation.groups[evaluation.groups["attribute"].isin(("all", *attributes))]
        bands_only = ages_are_bands(evaluation.overall)
        frame = pd.DataFrame({
            "attribute": groups["attribute"].to_numpy(), "group": groups["group"].to_numpy(),
            "n": groups["n"].to_numpy(),
            f"{name} MAE": ["" if bands_only else _mae(row) for _, row in groups.iterrows()],
            f"{name} gender acc.": [_accuracy(row) for _, row in groups.iterrows()],
        })
        bands = evaluation.tables.get("age_band_accuracy")
        if bands is not None and not bands.empty:
            shown = bands.assign(**{f"{name} age-band acc.": [
                with_interval(r["age_band_accuracy"], r["age_band_accuracy_ci_low"], r["age_band_accuracy_ci_high"],
                              as_percent=True) for _, r in bands.iterrows()]})
            frame = frame.merge(shown[["attribute", "group", f"{name} age-band acc."]], on=["attribute", "group"],
                                how="left")
        frames.append(frame)
    table = frames[0]
    for frame in frames[1:]:
        table = table.merge(frame.drop(columns="n"), on=["attribute", "group"], how="left", sort=False)
    return table


def side_by_side_gaps(evaluations: Mapping[str, Evaluation], attributes=COMPARED_ATTRIBUTES) -> pd.DataFrame:
    """Per attribute and model: the MAE gap (years) and gender accuracy gap (percentage points) between
    the worst and the best group, with the raw interval of that difference and, where the evaluation has
    it, its interval adjusted over the pairs of groups compared (Bonferroni), naming both, and the
    verdict, which rests on the adjusted interval (`worse` where it excludes zero). No MAE gap where ages
    are bands."""
    rows = []
    for name, evaluation in evaluations.items():
        for attribute in attributes:
            row = {"attribute": attribute, "model": name}
            for metric, label in (("mae", "MAE gap"), ("gender_accuracy", "gender acc. gap")):
                gap = evaluation.gaps[(evaluation.gaps["attribute"] == attribute) & (evaluation.gaps["metric"] == metric)]
                if gap.empty or (metric == "mae" and ages_are_bands(evaluation.overall)):
                    row[label] = ""
                    continue
                gap = gap.iloc[0]
                row[label] = f"{_gap_with_intervals(gap, metric == 'gender_accuracy')}: {gap['worst_group']} vs " \
                             f"{gap['best_group']} ({gap['verdict']})"
            rows.append(row)
    return pd.DataFrame(rows, columns=["attribute", "model", "MAE gap", "gender acc. gap"])


def _gap_with_intervals(gap: pd.Series, points: bool) -> str:
    """'-5.9 [-14.3, -0.2] raw, [-20.1, +2.9] adjusted': the verdict's own interval beside the raw one."""
    shown = difference(gap["difference"], gap["difference_ci_low"], gap["difference_ci_high"], points=points)
    if pd.isna(gap.get("difference_adjusted_ci_low", np.nan)):
        return shown
    adjusted = difference(gap["difference"], gap["difference_adjusted_ci_low"], gap["difference_adjusted_ci_high"],
                          points=points).split(" ", 1)[-1]
    unit = " pts" if points else ""
    return f"{shown.removesuffix(unit)} raw, {adjusted.removesuffix(unit)} adjusted{unit}"


def leakage_table(leakage: Mapping[str, Mapping]) -> pd.DataFrame:
    """Per dataset and split: test faces, those with a training face within the threshold, and how many
    of those share the exact age label (split.json's `leakage`)."""
    rows = []
    for dataset, entry in leakage.items():
        for split in ("naive", "grouped"):
            figures = entry[split]
            rows.append({
                "dataset": dataset, "split": split, "test faces": figures["test_faces"],
                "with a look-alike in train": f"{figures['test_faces_with_near_train']:,} "
                                              f"({percent(figures['share_with_near_train'])})",
                "… of the same age": figures["near_train_same_age"],
                "median distance to train": number(figures["median_nearest_train_distance"], 3),
                "clusters (largest; crowded ones re-split)": f"{entry['clusters']:,} ({entry['largest_cluster']:,}; "
                                                             f"{entry.get('crowded_clusters_resplit', 0):,})",
            })
    return pd.DataFrame(rows)


def split_comparison(grouped: Mapping[str, Evaluation], naive: Mapping[str, Evaluation]) -> pd.DataFrame:
    """Overall MAE (age-band accuracy where ages are bands) and gender accuracy per dataset under the
    grouped and the naive split."""
    rows = []
    for dataset in [d for d in grouped if d in naive]:
        for split, evaluations in (("grouped", grouped), ("naive (the study's)", naive)):
            evaluation = evaluations[dataset]
            overall = evaluation.groups.query("attribute == 'all'").iloc[0]
            bands_only = ages_are_bands(evaluation.overall)
            rows.append({"dataset": dataset, "split": split, "n": int(overall["n"]),
                         "MAE": "" if bands_only else _mae(overall),
                         "age-band accuracy": percent(evaluation.overall.get("age_band_accuracy")),
                         "gender accuracy": _accuracy(overall)})
    table = pd.DataFrame(rows)
    if not table.empty and (table["age-band accuracy"] == "").all():
        table = table.drop(columns="age-band accuracy")
    return table


def backbones_section(md: Markdown, compared: Mapping[str, Mapping[str, Evaluation]],
                      specs: Mapping[str, Mapping], confidence: float) -> None:
    """The backbone comparison: per dataset, every group's metrics per backbone, then the gaps."""
    md.heading("Backbones compared: the same heads on other embeddings", 2)
    if not compared:
        md.paragraph("No backbones compared: list some under `compare_backbones` in params.yaml "
                     "(e.g. `{vgg_face: {}, dlib_resnet: {name: dlib_resnet, fc_width: 256}}`).")
        return
    md.paragraph("The same faces, the same grouped split, the same heads from the same seeded random start "
                 f"and training budget; only the frozen features differ. Intervals: {confidence:.0%} bootstrap CIs.")
    md.bullets(f"{label}: {spec['spec']['name']}, {spec['spec']['feature_dim']}-d features, input "
               f"{spec['spec']['input_size']} px, alignment: {spec['spec']['alignment']}"
               + (f"; its heads are the `{spec['read_from_experiment']}` experiment's (the same heads from the same "
                  "start: read, not trained again)" if spec.get("read_from_experiment") else "")
               for label, spec in specs.items())
    datasets = list(dict.fromkeys(d for evaluations in compared.values() for d in evaluations))
    for dataset in datasets:
        evaluations = {label: e[dataset] for label, e in compared.items() if dataset in e}
        md.heading(f"On {dataset}", 3)
        md.table(side_by_side_groups(evaluations), f"{dataset}: per group, each backbone's heads")
        md.table(side_by_side_gaps(evaluations), f"{dataset}: worst − best group per attribute and backbone (raw "
                 f"{confidence:.0%} interval, and adjusted over the pairs of groups compared, Bonferroni; the "
                 "verdict rests on the adjusted one)")


def identical_splits(split_summary: Mapping) -> list[str]:
    """The datasets whose naive split came out identical to the grouped one (split.json's flag)."""
    return [name for name, entry in split_summary.get("datasets", {}).items() if entry.get("naive_equals_grouped")]


def paired_split_comparison(grouped: pd.DataFrame, naive: pd.DataFrame, bootstrap: Bootstrap) -> pd.DataFrame:
    """The same training on each split, judged on the test faces the two splits share (matched by id):
    per metric, each split's value there and naive − grouped with a paired bootstrap interval. Faces
    whose ages are bands carry no MAE. Empty when the two test splits share no face."""
    columns = ["id", "age", "age_pred", "gender", "gender_pred"]
    banded = grouped[BAND_COLUMN].notna() if BAND_COLUMN in grouped.columns else pd.Series(False, grouped.index)
    shared = grouped[columns].assign(banded=banded.to_numpy()).merge(naive[columns], on="id",
                                                                     suffixes=("_grouped", "_naive"))
    if shared.empty:
        return pd.DataFrame()
    rows = []
    exact = shared[shared["age_grouped"].notna() & ~shared["banded"]]
    outcomes = {"MAE (years)": (exact, lambda f, s: (f[f"age_pred_{s}"] - f[f"age_{s}"]).abs()),
                "gender accuracy": (shared[shared["gender_grouped"].notna()],
                                    lambda f, s: (f[f"gender_pred_{s}"].astype(object)
                                                  == f[f"gender_{s}"].astype(object)).astype(float))}
    sides, p_values = [], []
    for metric, (frame, outcome) in outcomes.items():
        if frame.empty:
            continue
        naive_values, grouped_values = outcome(frame, "naive"), outcome(frame, "grouped")
        gap = paired_mean_gap(naive_values, grouped_values, bootstrap, f"leakage:{metric}")
        accuracy = metric == "gender accuracy"
        sides.append((direction(gap.difference_ci_low, gap.difference_ci_high), "above" if accuracy else "below"))
        p_values.append(paired_p_value((naive_values - grouped_values).to_numpy(dtype=float)))
        shown = (lambda v: percent(v)) if accuracy else (lambda v: number(v))
        rows.append({"metric": metric, "shared test faces": len(frame),
                     "grouped split": shown(grouped_values.mean()), "naive split (the study's)": shown(naive_values.mean()),
                     "naive − grouped [CI]": difference(gap.difference, gap.difference_ci_low, gap.difference_ci_high,
                                                        points=accuracy)})
    adjusted = holm(p_values)
    for row, (side, flattered), p_adjusted in zip(rows, sides, adjusted):
        survives = p_adjusted < 1 - bootstrap.confidence
        row["p (Holm over the metrics)"] = p_value_text(p_adjusted)
        row["verdict"] = ("no difference shown" if side in ("n.s.", "no interval") or not survives
                          else "the naive split scores better: flattered" if side == flattered
                          else "the naive split scores worse")
    return pd.DataFrame(rows)


def leakage_section(md: Markdown, split_summary: Mapping, grouped: Mapping[str, Evaluation] | None,
                    naive: Mapping[str, Evaluation] | None, *, paired: pd.DataFrame | None = None,
                    dataset: str | None = None) -> None:
    """How many test faces had a look-alike in training under each split, and the same training on
    both splits compared on the test faces they share (paired); only the dataset the heads train on,
    since leakage needs a training face. For a dataset whose two splits are identical, that fact
    instead of a comparison."""
    md.heading("Leakage: the study's split against a grouped split", 2)
    clusters = split_summary.get("clusters")
    if clusters:
        measured = ("dlib's 128-d face descriptor (the identity stage's, whatever backbone the heads read)"
                    if clusters.get("embedding") == "dlib_resnet" else "the heads' own cached features")
        md.paragraph(f"Faces without an identity label were grouped into look-alike clusters (within "
                     f"{clusters['threshold']} {clusters['metric']} in {measured}, single linkage) kept on one side "
                     "of the grouped split. A test face with a training face that close is often the same person, "
                     "from the same photo session, but also, where the embedding crowds a group together, "
                     f"merely a face it cannot tell apart: a cluster over {clusters.get('max_size', '?')} faces "
                     "cannot be one person, so it is re-split at a tighter threshold, and those faces may "
                     "still have a look-alike across the grouped split.")
        md.table(leakage_table(split_summary.get("leakage", {})))
    elif split_summary.get("clusters_skipped"):
        md.paragraph(f"No look-alike clusters: {split_summary['clusters_skipped']}. The grouped split keeps only "
                     "labelled identities together.")
    else:
        md.paragraph("Look-alike clustering is off (`split.clusters: null`): the grouped split keeps only "
                     "labelled identities together.")
    same = identical_splits(split_summary)
    if same:
        md.paragraph(f"For {', '.join(same)} the naive split is identical to the grouped one (no identity labels and "
                     "no look-alike clusters to keep together): an experiment on the naive split repeats one on "
                     "the grouped split there, so there is no leakage to measure and nothing to compare.")
    if dataset in same:
        return
    differ = set(split_summary.get("datasets", {})) - set(same)
    compared = {d: e for d, e in (grouped or {}).items() if d not in same and (differ or not split_summary)}
    if compared and naive:
        md.table(split_comparison(compared, naive),
                 "The same training (retrained) on each split, each on its own test faces (not paired: the two test "
                 "splits differ, so these figures alone cannot show leakage)")
    if paired is not None and not paired.empty:
        md.table(paired, f"The same training on each split, judged on the {dataset or ''} test faces both splits hold "
                         "(paired bootstrap interval of naive − grouped): *flattered* only where the interval "
                         "excludes 0 and the p-value survives Holm's adjustment over the metrics compared")
    elif compared and naive:
        md.paragraph("The two test splits share no face: no paired comparison.")
