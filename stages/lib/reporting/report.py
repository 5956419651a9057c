"""The study's report: `report.md` and its figures over every experiment, in the study's order (R1–R14
of shared/reference/study.md).

Reads what the earlier stages wrote, and says so in the report where something is absent:
    <interim>/<dataset>/quality.json, crops quality.json, split.json  (data summaries)
    <models>/<exp>/history.csv                  training history (epoch, loss, val_loss, ...)
    <experiments>/<exp>/predictions.parquet     predictions (figures, the correction model)
    <experiments>/<exp>/evaluation/<dataset>/   the evaluate stage's groups, gaps, tables and metrics
    <probe>/probes.csv, balanced.csv            linear probes and balanced heads per backbone (probe stage)
    <measurements>/measurements.parquet         skin colour and photo quality per face (measure stage; optional)
Writes report.md, the figures, correction.csv and `<plots>/experiments/<dataset>.csv` (DVC plot data:
MAE and RMSE per experiment with CIs). Each section is a function of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stages.lib.core.params import Params, Paths
from stages.lib.evaluation.correction import correction_protocol
from stages.lib.evaluation.curves import predicted_vs_actual, share_by_age_gender
from stages.lib.evaluation.gains import training_gains, training_steps
from stages.lib.evaluation.groups import Evaluation
from stages.lib.evaluation.source_bands import ages_are_bands
from stages.lib.evaluation.intervals import binomial_interval
from stages.lib.evaluation.results import bootstrap_from, load_evaluations
from stages.lib.evaluation.worst_groups import REFERENCE, adjust_changes
from stages.lib.reporting import fidelity
from stages.lib.reporting import figures as plots
from stages.lib.reporting.comparisons import backbones_section, leakage_section, paired_split_comparison
from stages.lib.reporting.findings import Facts, band_change_family, first_screen
from stages.lib.reporting.markdown import (Markdown, correction_section, difference, evaluation_sections, number, p_value_text,
                                           percent, study_tables, with_interval)
from stages.lib.reporting.mitigation import mitigation_report, reference_of
from stages.lib.reporting.published_models import published_models_section
from stages.lib.reporting.populations import sample_sentence
from stages.lib.reporting.skin_section import headline_lines, skin_section, skin_study
from stages.lib.reporting.twins import twin_summary
from stages.lib.reporting.roles import (Selection, outsider_kinds, published_model, select_best, selection_sentence,
                                       study_models, with_outsiders)


@dataclass(frozen=True)
class ExperimentResults:
    name: str
    init: str
    evaluations: dict[str, Evaluation]     # dataset -> its evaluation (test split)
    predictions: pd.DataFrame | None
    history: pd.DataFrame | None


def load_experiment(name: str, params: Params) -> ExperimentResults | None:
    reports, models = params.paths.experiments, params.paths.models
    folder = reports / name / "evaluation"
    if not folder.exists():
        return None
    evaluations = load_evaluations(folder, params.age_bands, params.evaluate.confidence)
    predictions_path = reports / name / "predictions.parquet"
    predictions = pd.read_parquet(predictions_path) if predictions_path.exists() else None
    history_path = models / name / "history.csv"
    history = pd.read_csv(history_path) if history_path.exists() else None
    return ExperimentResults(name, params.experiments[name].init, evaluations, predictions, history)


BAND_CHANGES = "band_changes.csv"   # per-age-band paired changes against the reference (evaluate, where computed)
AGE_ERRORS = ("mae", "mae_ci_low", "mae_ci_high", "rmse", "rmse_ci_low", "rmse_ci_high", "mae_argmax")


def comparison_table(results: list[ExperimentResults], params: Params) -> pd.DataFrame:
    """One row per experiment and dataset: n, MAE and RMSE with CIs, gender accuracy, and age-band
    accuracy where the dataset has bands; where its ages are bands only (FairFace), no MAE or RMSE:
    against a band's midpoint they measure the band's width as much as the model. `test set` names the
    dataset, marked where the published model's figures are in-sample (fidelity.test_set_label)."""
    rows = []
    for result in results:
        for dataset, evaluation in result.evaluations.items():
            overall = evaluation.overall
            bands_only = ages_are_bands(overall)
            rows.append({"experiment": result.name, "dataset": dataset, "n": overall["n"],
                         "test set": fidelity.test_set_label(params, result.init, dataset),
                         **{key: None if bands_only else overall.get(key) for key in AGE_ERRORS},
                         **{key: overall.get(key) for key in (
                             "gender_accuracy", "gender_accuracy_ci_low", "gender_accuracy_ci_high",
                             "age_band_accuracy")}})
    return pd.DataFrame(rows, columns=["experiment", "dataset", "test set", "n", *AGE_ERRORS, "gender_accuracy",
                                       "gender_accuracy_ci_low", "gender_accuracy_ci_high", "age_band_accuracy"])


def comparison_display(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    ci = f"{confidence:.0%} CI"
    return pd.DataFrame({
        "experiment": table["experiment"], "test set": table["test set"], "n": table["n"].map(lambda n: f"{n:,}"),
        f"MAE [{ci}]": [with_interval(v, lo, hi) for v, lo, hi in
                         zip(table["mae"], table["mae_ci_low"], table["mae_ci_high"])],
        f"RMSE [{ci}]": [with_interval(v, lo, hi) for v, lo, hi in
                          zip(table["rmse"], table["rmse_ci_low"], table["rmse_ci_high"])],
        "argmax MAE": table["mae_argmax"].map(number),
        f"gender accuracy [{ci}]": [with_interval(v, lo, hi, as_percent=True) for v, lo, hi in zip(
            table["gender_accuracy"], table["gender_accuracy_ci_low"], table["gender_accuracy_ci_high"])],
        "age-band accuracy": table["age_band_accuracy"].map(percent),
    })


def main_dataset(params: Params, comparison: pd.DataFrame) -> str:
    """The fine-tuning dataset when it was evaluated, else the first evaluated one."""
    datasets = list(dict.fromkeys(comparison["dataset"]))
    return params.roles.finetune if params.roles.finetune in datasets else datasets[0]


def _reasons(counts: dict | None) -> str:
    return "; ".join(f"{reason} {n:,}" for reason, n in (counts or {}).items()) or "none"


def pipeline_counts(prepared: dict[str, dict], crops: dict, split: dict) -> pd.DataFrame:
    """One row per dataset: rows read, kept and rejected (with reasons) by prepare and crop, how the
    crops were made, and the rows per split."""
    rows = []
    for name in sorted(set(prepared) | set(crops.get("datasets", {}))):
        prepare, crop = prepared.get(name, {}), crops.get("datasets", {}).get(name, {})
        splits = split.get("datasets", {}).get(name, {}).get("rows", {})
        rows.append({
            "dataset": name,
            "read": prepare.get("rows_in", ""), "kept by prepare": prepare.get("kept", ""),
            "rejected by prepare": _reasons(prepare.get("rejected_by_reason")),
            "cropped": crop.get("kept", ""), "rejected by crop": _reasons(crop.get("rejected_by_reason")),
            "crops made by": ", ".join(f"{route} {n:,}" for route, n in crop.get("routes", {}).items()),
            "train / val / test": " / ".join(f"{splits[s]:,}" for s in ("train", "val", "test")) if splits else "",
        })
    return pd.DataFrame(rows)


def crop_rejection_by_race(crops: dict) -> pd.DataFrame:
    """Share of each race's faces the crop stage lost, per dataset (the detector is part of the bias)."""
    rates = {name: entry.get("rejection_rate_by", {}).get("race", {})
             for name, entry in crops.get("datasets", {}).items()}
    rates = {name: by_race for name, by_race in rates.items() if any(by_race.values())}
    if not rates:
        return pd.DataFrame()
    table = pd.DataFrame(rates).T.map(percent)
    table.insert(0, "dataset", table.index)
    return table.reset_index(drop=True)


def precropped_detection_table(crops: dict, confidence: float = 0.95) -> pd.DataFrame:
    """Each detector's detection rate on ready face crops (crop.detect_precropped) by race x gender,
    with its Wilson interval and n: one column per dataset and detector."""
    columns = {}
    for dataset, entry in crops.get("datasets", {}).items():
        for detector, measured in entry.get("detection_on_precropped", {}).items():
            rates = {**measured["by"]["race_gender"], "all": {"in": measured["attempted"], "found": measured["found"]}}
            columns[f"{dataset}: {detector}"] = {
                group: f"{percent(r['found'] / r['in'])} [{percent(low)}, {percent(high)}] (n={r['in']:,})"
                for group, r in rates.items()
                for low, high in [binomial_interval(r["found"], r["in"], confidence)]}
    if not columns:
        return pd.DataFrame()
    table = pd.DataFrame(columns).fillna("")
    table.insert(0, "race gender", table.index)
    return table.reset_index(drop=True)


def data_section(md: Markdown, paths: Paths) -> None:
    """What went in and what was lost at each step, per dataset; the full summaries are linked."""
    md.heading("Data", 2)
    prepared_paths = sorted(paths.interim.glob("*/quality.json"))
    crops_path, split_path = paths.crops_quality, paths.split_summary
    prepared = {path.parent.name: json.loads(path.read_text()) for path in prepared_paths}
    crops = json.loads(crops_path.read_text()) if crops_path.exists() else {}
    split = json.loads(split_path.read_text()) if split_path.exists() else {}
    if prepared or crops:
        detector = crops.get("settings", {}).get("detector", "?")
        md.table(pipeline_counts(prepared, crops, split),
                 f"Rows kept and lost per stage (crop detector: {detector}); every rejected row is kept with its "
                 "reason in the stage's rejects.csv")
        lost = crop_rejection_by_race(crops)
        if not lost.empty:
            md.table(lost, "Share of each race's faces lost at the crop stage")
        detected = precropped_detection_table(crops)
        if not detected.empty:
            md.table(detected, "The detectors on real faces that were cropped already (crop.detect_precropped): "
                               "share of photos in which each finds a face, 95% Wilson interval; no row is dropped")
    present = [path for path in [*prepared_paths, crops_path, split_path] if path.exists()]
    if present:
        md.paragraph("Full summaries (by gender, race, age band and their intersections): "
                     + ", ".join(f"`{path}`" for path in present) + ".")
    missing = [f"`{path}`" for path in (crops_path, split_path) if not path.exists()]
    if not prepared_paths:
        missing.insert(0, f"`{paths.interim}/<dataset>/quality.json`")
    if missing:
        md.paragraph("Not available (run `dvc repro` up to the stage that writes them): " + ", ".join(missing) + ".")


def share_source(params: Params, best: ExperimentResults, dataset: str) -> tuple[pd.DataFrame, str]:
    """Faces of the fine-tuning dataset for R5: the whole split manifest if present, else the predictions."""
    manifest = params.paths.manifest
    if manifest.exists():
        frame = pd.read_parquet(manifest, columns=["dataset", "age", "gender"])
        return frame[frame["dataset"] == dataset], f"all {dataset} faces of `{manifest}`"
    if best.predictions is not None:
        frame = best.predictions
        return frame[frame["dataset"] == dataset].drop_duplicates("id"), f"{dataset} faces in {best.name}'s predictions"
    return pd.DataFrame(columns=["age", "gender"]), "no table of faces"


def correction_for(best: ExperimentResults, dataset: str, params: Params) -> tuple[pd.DataFrame, str] | None:
    if best.predictions is None:
        return None
    rows = best.predictions[best.predictions["dataset"] == dataset]
    found = correction_protocol(rows, rows[rows["split"] == "test"], bootstrap_from(params))
    return None if found is None else (found[0], f"{best.name} on {dataset}: {found[1]}")


def gap_trend(results: list[ExperimentResults], dataset: str) -> pd.DataFrame:
    """MAE worst − best per breakdown and experiment: does rebalancing narrow the gaps?"""
    rows = {}
    for result in results:
        evaluation = result.evaluations.get(dataset)
        if evaluation is None:
            continue
        mae_gaps = evaluation.gaps[evaluation.gaps["metric"] == "mae"]
        rows[result.name] = {a: f"{number(d)} ({w} vs {b})" for a, d, w, b in zip(
            mae_gaps["attribute"], mae_gaps["difference"], mae_gaps["worst_group"], mae_gaps["best_group"])}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.insert(0, "experiment", table.index)
    return table.reset_index(drop=True)


def build_report(params: Params) -> Path:
    """Write the report and its figures (params.paths.reports / report.md); returns the report's path.

    Each section describes the experiment of its role (roles.py): the published model for R1–R3, R11
    and R12; the plain retrained model for R4; the best of the study's models, chosen on the val split
    and never a control, for R7–R10."""
    reports = params.paths.reports
    md = Markdown(reports)
    md.heading("Face age and gender bias study: results", 1)
    results = [r for r in (load_experiment(name, params) for name in params.experiments) if r]
    absent = [name for name in params.experiments if name not in {r.name for r in results}]
    results = [r for r in results if r.evaluations]
    if not results:
        md.paragraph("No experiment has been evaluated yet: run `dvc repro` (train and evaluate stages).")
        data_section(md, params.paths)
        return _write(md, reports)
    comparison = comparison_table(results, params)
    dataset = main_dataset(params, comparison)
    by_name = {r.name: r for r in results}
    evaluated = {name: params.experiments[name] for name in by_name}
    baseline = by_name.get(published_model(evaluated) or "")
    predictions = {r.name: r.predictions for r in results}
    selection = with_outsiders(select_best(predictions, study_models(evaluated), dataset, bootstrap_from(params)),
                               predictions, outsider_kinds(evaluated), bootstrap_from(params))
    best = _best_by_role(by_name, selection, evaluated, dataset)
    gains = _gains(params, results, dataset)
    correction = correction_for(best, dataset, params) if best is not None else None
    twins = twin_summary(params, [r.name for r in results])
    facts = _facts(params, dataset, by_name, baseline=baseline, selection=selection, gains=gains,
                   correction=correction, twins=twins)
    facts.best_test = _test_rows(best, dataset) if best is not None else None
    facts.published_rows = _all_test_rows(baseline)
    facts.samples = sample_sentence(params)
    skin_models = [*dict.fromkeys(r.name for r in (baseline, by_name.get(REFERENCE), best) if r is not None),
                   *params.audit_models]
    skin = skin_study(params, skin_models)
    facts.more_findings = list(headline_lines(skin, skin_models))
    first_screen(md, facts)

    summary_section(md, params, results, absent, comparison=comparison, dataset=dataset, gains=gains)
    data_section(md, params.paths)
    if baseline is not None:
        published_section(md, params, baseline, dataset)
    training_section(md, params, results)
    fidelity.protocol_section(md, params)
    population_section(md, params, best or results[0], dataset)
    experiments_section(md, params, results, comparison, dataset=dataset)
    band_changes_section(md, facts)
    if best is not None:
        best_model_section(md, params, best, dataset, selection=selection, correction=correction)
        if not _test_rows(best, dataset).empty:
            fidelity.gender_coding_section(md, params, best.name, dataset, test_rows=_test_rows(best, dataset),
                                           evaluation=best.evaluations[dataset], bootstrap=bootstrap_from(params))
    split_summary = json.loads(params.paths.split_summary.read_text()) if params.paths.split_summary.exists() else {}
    naive = next((r for r in results if params.experiments[r.name].split == "naive"), None)
    reference = by_name.get(REFERENCE)
    grouped_rows, naive_rows = (_test_rows(r, dataset) if r is not None else pd.DataFrame()
                                for r in (reference, naive))
    paired = (paired_split_comparison(grouped_rows, naive_rows, bootstrap_from(params))
              if not grouped_rows.empty and not naive_rows.empty else None)
    leakage_section(md, split_summary, _finetune_only(reference, dataset), _finetune_only(naive, dataset),
                    paired=paired, dataset=dataset)
    compared, specs = load_compared(params)
    backbones_section(md, compared, specs, params.evaluate.confidence)
    mitigation_report(md, params, {r.name: _test_rows(r, dataset) for r in results}, specs, twins=twins)
    published_models_section(md, params)
    skin_section(md, params, skin, dataset=dataset, models=skin_models)
    md.heading("Every experiment's tables", 2)
    folder = params.paths.experiments.relative_to(params.paths.reports)
    md.bullets(f"{r.name}: " + ", ".join(f"[{d}]({folder}/{r.name}/evaluation/{d}/groups.csv)" for d in r.evaluations)
               for r in results)
    return _write(md, reports)


def _best_by_role(by_name: dict[str, ExperimentResults], selection: Selection | None, evaluated: dict,
                  dataset: str) -> ExperimentResults | None:
    """The val-chosen best of the study's models; without val predictions, the plain retrained model
    (the reference), else the first of the study's models evaluated on `dataset`; never a control."""
    if selection is not None:
        return by_name[selection.best]
    candidates = [REFERENCE, *study_models(evaluated)]
    return next((by_name[n] for n in candidates if n in by_name and dataset in by_name[n].evaluations), None)


def _finetune_only(result: ExperimentResults | None, dataset: str) -> dict[str, Evaluation] | None:
    """Leakage concerns the dataset the heads train on: other test sets' evaluations are dropped."""
    return None if result is None else {d: e for d, e in result.evaluations.items() if d == dataset}


def _gains(params: Params, results: list[ExperimentResults], dataset: str) -> pd.DataFrame:
    steps = training_steps({r.name: params.experiments[r.name] for r in results})
    tested = ((r.name, _test_rows(r, dataset)) for r in results)
    return training_gains({name: rows for name, rows in tested if not rows.empty}, steps, bootstrap_from(params))


def _facts(params: Params, dataset: str, by_name: dict[str, ExperimentResults], *,
           baseline: ExperimentResults | None, selection: Selection | None, gains: pd.DataFrame,
           correction: tuple[pd.DataFrame, str] | None,
           twins: pd.DataFrame | None = None) -> Facts:
    evaluated = {name: params.experiments[name] for name in by_name}
    crops = json.loads(params.paths.crops_quality.read_text()) if params.paths.crops_quality.exists() else {}
    worst = twins if twins is not None else pd.DataFrame()
    worst = adjust_changes(worst, 1 - params.evaluate.confidence) if not worst.empty else worst
    shares, _ = share_source(params, by_name.get(REFERENCE) or next(iter(by_name.values())), dataset)
    return Facts(
        params=params, dataset=dataset, published=baseline.name if baseline else None,
        published_evaluations=baseline.evaluations if baseline else {},
        published_test=_test_rows(baseline, dataset) if baseline else None,
        reference=REFERENCE if REFERENCE in by_name else None,
        evaluations={name: r.evaluations for name, r in by_name.items()}, selection=selection,
        excluded=[n for n in evaluated if n not in study_models(evaluated) and n != (baseline.name if baseline else None)],
        gains=gains, band_changes=load_band_changes(params, list(by_name), dataset), worst_groups=worst,
        mitigations=[n for n, e in evaluated.items() if e.mitigation is not None], crops=crops,
        correction=correction[0] if correction else None, shares=shares)


def load_band_changes(params: Params, names: list[str], dataset: str) -> dict[str, pd.DataFrame]:
    """Each experiment's band_changes.csv on `dataset` (per-age-band paired MAE changes against the
    reference, written by the evaluate stage where it computes them)."""
    paths = {name: params.paths.experiments / name / "evaluation" / dataset / BAND_CHANGES for name in names}
    return {name: pd.read_csv(path) for name, path in paths.items() if path.exists()}


def band_changes_section(md: Markdown, facts: Facts) -> None:
    """Does oversampling the old help the old, and at whose cost? Per-band paired changes."""
    if not facts.band_changes:
        md.paragraph(f"**Per age band** (does oversampling the old help the old, and at whose cost?): not computed "
                     f"in this run: no experiment wrote `evaluation/{facts.dataset}/{BAND_CHANGES}`.")
        return
    family = band_change_family(facts.band_changes, facts.dataset)
    alpha = 1 - facts.params.evaluate.confidence
    rows = [{"experiment": r["experiment"], "against": reference_of(r), "band": r["band"], "n": int(r["n"]),
             "MAE twin → this": f"{number(r['mae_reference'])} → {number(r['mae'])}",
             "change [raw CI]": difference(r["delta"], r["ci_low"], r["ci_high"]),
             "p (raw)": number(r["p_value"], 3), f"p (Holm-adjusted over all {len(family)})": number(r["p_family"], 3),
             "significant": "—" if pd.isna(r["p_family"]) else "yes" if r["p_family"] < alpha else "no"}
            for _, r in family.iterrows()]
    md.table(pd.DataFrame(rows), f"Per age band on {facts.dataset}: each experiment's MAE change against its "
                                 "twin (*against*: the same start, head and budget, without its treatment) on the "
                                 "same faces (paired); raw intervals; the p-values after Holm's adjustment over every "
                                 "band test listed, one family")



PREDICTED = ("age_pred", "gender_prob_female")


def identical_predictions(results: list[ExperimentResults], dataset: str) -> list[tuple[str, str]]:
    """(experiment, the earlier experiment it equals): pairs whose test predictions on `dataset` are the
    same on every face, ids and values alike. Two such rows of the table are one model twice (e.g. heads
    trained from the same start on the same rows), so neither says anything about the other's method."""
    tests = {}
    for result in results:
        if result.predictions is None:
            continue
        rows = result.predictions.query("dataset == @dataset and split == 'test'")
        if len(rows):
            tests[result.name] = rows.set_index("id")[list(PREDICTED)].sort_index()
    pairs = []
    for position, (name, rows) in enumerate(tests.items()):
        same = next((earlier for earlier, other in list(tests.items())[:position]
                     if other.index.equals(rows.index) and other.equals(rows)), None)
        if same is not None:
            pairs.append((name, same))
    return pairs


def summary_section(md: Markdown, params: Params, results: list[ExperimentResults], absent: list[str], *,
                    comparison: pd.DataFrame, dataset: str, gains: pd.DataFrame) -> None:
    """What was run, the headline table, and R14 (the cut from the published model, change by change)."""
    md.heading("Every experiment", 2)
    confidence = params.evaluate.confidence
    md.paragraph(f"Experiments evaluated: {', '.join(r.name for r in results)}"
                 + (f"; not evaluated yet: {', '.join(absent)}" if absent else "") + f". Main test set: {dataset}. "
                 f"Intervals are {confidence:.0%}: bootstrap ({params.evaluate.bootstrap:,} resamples) for errors "
                 "and for differences between groups or models, Wilson for accuracies; groups under "
                 f"{params.evaluate.min_group_size} faces are flagged, not judged. Test sets whose ages are bands "
                 "only show age-band accuracy, not MAE, and are never pooled with exact ages.")
    md.table(comparison_display(comparison, confidence))
    twins = identical_predictions(results, dataset)
    if twins:
        md.paragraph("Identical predictions on every " + dataset + " test face: "
                     + "; ".join(f"{name} = {same}" for name, same in twins)
                     + ". Each pair is one model twice (the same heads from the same start on the same rows), "
                     "so its rows above repeat each other and neither is evidence about the other's method.")
    note = fidelity.in_sample_note(params, list(dict.fromkeys(comparison["dataset"])))
    if note:
        md.paragraph(note)
    gains_section(md, params, gains, dataset)


def gains_display(gains: pd.DataFrame, confidence: float) -> pd.DataFrame:
    ci = f"{confidence:.0%} CI"
    return pd.DataFrame({
        "change": gains["step"], "from → to": gains["before"] + " → " + gains["after"],
        "faces": gains["n"].map(lambda n: f"{n:,}"),
        "MAE before → after": [f"{number(before)} → {number(after)}"
                               for before, after in zip(gains["mae_before"], gains["mae_after"])],
        f"MAE change, years [{ci}]": [difference(v, lo, hi) for v, lo, hi in zip(
            gains["change"], gains["change_ci_low"], gains["change_ci_high"])],
        f"share of MAE cut [{ci}]": [with_interval(v, lo, hi, as_percent=True) for v, lo, hi in zip(
            gains["cut_share"], gains["cut_share_ci_low"], gains["cut_share_ci_high"])],
        "p (adjusted)": gains["p_adjusted"].map(p_value_text) if "p_adjusted" in gains else "",
        "verdict": gains["verdict"],
    })


def gains_section(md: Markdown, params: Params, gains: pd.DataFrame, dataset: str) -> None:
    """R14 split by change: published → retrained (retraining), then retrained → each rebalanced
    variant (rebalancing), each a paired comparison on the test faces both models predicted."""
    if gains.empty:
        md.paragraph(f"**R14** (what retraining and rebalancing each cut from the published model's MAE): not "
                     f"measured; it needs the {dataset} test predictions of the published model, the plain "
                     "retrained one and the rebalanced ones.")
        return
    md.paragraph(f"**R14**, each change credited with its own cut on {dataset}: retraining is published → "
                 "retrained, rebalancing is retrained → each oversampled or reweighted variant, both models "
                 "judged on the same test faces (paired bootstrap). *better* (*worse*) only where the interval "
                 "of the change lies below (above) zero and its p-value survives Holm's adjustment for the "
                 f"{len(gains)} changes in the table. The study credited its rebalanced model with a 24% cut (10 → 7.8) "
                 "over the published one, which lumps both changes together.")
    md.table(gains_display(gains, params.evaluate.confidence))


def published_section(md: Markdown, params: Params, baseline: ExperimentResults, dataset: str) -> None:
    """R1–R3 (mean prediction against true age on every test set), then R11 and R12 on the main test
    set: the study's gender tables are the published model's."""
    md.heading(f"The published model, {baseline.name} (R1–R3, R11, R12)", 2)
    curves = pd.concat([predicted_vs_actual(_test_rows(baseline, d), f"{d}") for d in baseline.evaluations
                        if not _test_rows(baseline, d).empty] or [pd.DataFrame()], ignore_index=True)
    if not curves.empty:
        path = plots.save_figure(plots.predicted_vs_actual_figure(
            curves, f"{baseline.name}: mean predicted vs true age", _legend(baseline, params)),
            params.paths.figures / "published_predicted_vs_actual.png")
        md.figure(path, "Mean predicted age against true age per test set; the dashed line is a perfect prediction.")
    evaluation = baseline.evaluations.get(dataset)
    if evaluation is None:
        md.paragraph(f"R11, R12: the published model was not evaluated on {dataset}.")
        return
    figures = plots.write_figures(evaluation, params.paths.figures / "published", f"{baseline.name} on {dataset}",
                                  min_count=params.evaluate.min_group_size)
    study_tables(md, evaluation, figures, 3, parts=("R11", "R12"), min_count=params.evaluate.min_group_size)


def training_section(md: Markdown, params: Params, results: list[ExperimentResults]) -> None:
    """R4: training and validation loss per experiment."""
    md.heading("Training (R4)", 2)
    histories = {r.name: r.history for r in results if r.history is not None and plots.loss_columns(r.history)}
    if histories:
        path = plots.save_figure(plots.loss_curves_figure(histories), params.paths.figures / "loss_curves.png")
        md.figure(path, "Training (solid) and validation (dashed) loss per epoch; dots mark the best validation epoch.")
    else:
        md.paragraph(f"No training history found (`{params.paths.models}/<experiment>/history.csv`).")


def population_section(md: Markdown, params: Params, best: ExperimentResults, dataset: str) -> None:
    """R5: who is in the main test set, by age and gender."""
    md.heading(f"Who is in {dataset} (R5)", 2)
    faces, described = share_source(params, best, dataset)
    if not faces.empty and faces["gender"].notna().any():
        path = plots.save_figure(plots.share_figure(share_by_age_gender(faces), f"{dataset}: faces by age and gender"),
                                 params.paths.figures / "share_by_age_gender.png")
        md.figure(path, f"Share of faces by age and gender ({described}).")
    else:
        md.paragraph("No faces with gender labels to count.")


def experiments_section(md: Markdown, params: Params, results: list[ExperimentResults], comparison: pd.DataFrame,
                        *, dataset: str) -> None:
    """R6: every experiment side by side, and whether rebalancing narrows the gaps."""
    confidence, figures_dir = params.evaluate.confidence, params.paths.figures
    md.heading("Experiments compared (R6)", 2)
    exact = comparison[comparison["mae"].notna()]          # band-only test sets have no MAE to draw
    path = plots.save_figure(plots.experiments_figure(exact, confidence), figures_dir / "experiments.png")
    md.figure(path, f"MAE and RMSE per experiment and test set with exact ages, whiskers: {confidence:.0%} CI.")
    _write_experiment_plots(exact, params.paths.plots / "experiments")
    curves = pd.concat([predicted_vs_actual(_test_rows(r, dataset), r.name) for r in results
                        if not _test_rows(r, dataset).empty] or [pd.DataFrame()], ignore_index=True)
    if not curves.empty:
        legend = {r.name: f"{r.name} (MAE {r.evaluations[dataset].overall['mae']:.2f})" for r in results
                  if dataset in r.evaluations}
        path = plots.save_figure(plots.predicted_vs_actual_figure(curves, f"Every experiment on {dataset}", legend),
                                 figures_dir / "experiments_predicted_vs_actual.png")
        md.figure(path, f"Mean predicted against true age on {dataset}, one line per experiment.")
    trend = gap_trend(results, dataset)
    if not trend.empty:
        md.table(trend, f"MAE gap (worst − best group) per breakdown on {dataset}, point estimates: the paired "
                        "intervals of each change against the experiment's twin are in the mitigation section")


def best_model_section(md: Markdown, params: Params, best: ExperimentResults, dataset: str, *,
                       selection: Selection | None, correction: tuple[pd.DataFrame, str] | None) -> None:
    """R7, R8 and R10 on the best of the study's models (chosen on val), then R9 (post-hoc correction)."""
    confidence = params.evaluate.confidence
    chosen = ("lowest MAE on the val split among the study's models" if selection is not None
              else "no val predictions to choose on: the plain retrained model")
    md.heading(f"The study's best retrained model, {best.name} ({chosen}), on {dataset} (R7, R8, R10)", 2)
    if selection is not None:
        md.paragraph(selection_sentence(selection, []))
    evaluation = best.evaluations[dataset]
    figures = plots.write_figures(evaluation, params.paths.figures / "best", f"{best.name} on {dataset}",
                                  min_count=params.evaluate.min_group_size)
    evaluation_sections(md, evaluation, figures, confidence, min_group_size=params.evaluate.min_group_size, level=3,
                        parts=("R10",))   # R11, R12: the published model's, as in the study
    if correction is not None:
        correction[0].to_csv(params.paths.reports / "correction.csv", index=False)
        correction_section(md, correction[0], correction[1], confidence)
    else:
        md.heading("Post-hoc correction (R9)", 2)
        md.paragraph(f"Not run: {best.name}'s predictions table is absent or too small.")


def load_compared(params: Params) -> tuple[dict[str, dict[str, Evaluation]], dict[str, dict]]:
    """The compare stage's evaluations {label: {dataset: Evaluation}} and specs, in params' order."""
    compared, specs, folder = {}, {}, params.paths.compare_reports
    for label in params.compare_backbones:
        spec_path = folder / label / "spec.json"
        if not spec_path.exists():
            continue
        specs[label] = json.loads(spec_path.read_text())
        compared[label] = load_evaluations(folder / label / "evaluation", params.age_bands,
                                           params.evaluate.confidence)
    return compared, specs


def _all_test_rows(result: ExperimentResults | None) -> pd.DataFrame | None:
    """`result`'s test rows on every test set (None without predictions)."""
    if result is None or result.predictions is None:
        return None
    return result.predictions[result.predictions["split"] == "test"]


def _test_rows(result: ExperimentResults, dataset: str) -> pd.DataFrame:
    if result.predictions is None:
        return pd.DataFrame()
    frame = result.predictions
    rows = frame[frame["split"] == "test"]
    return rows if dataset == "all" else rows[rows["dataset"] == dataset]


def _legend(result: ExperimentResults, params: Params) -> dict[str, str]:
    return {d: f"{fidelity.test_set_label(params, result.init, d)} (n={e.overall['n']:,}, "
               + (f"age-band accuracy {percent(e.overall['age_band_accuracy'])})" if ages_are_bands(e.overall)
                  else f"MAE {e.overall['mae']:.2f})")
            for d, e in result.evaluations.items()}


def _write_experiment_plots(comparison: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for dataset, rows in comparison.groupby("dataset", sort=False):
        rows[["experiment", "n", "mae", "mae_ci_low", "mae_ci_high", "rmse", "rmse_ci_low", "rmse_ci_high"]].to_csv(
            folder / f"{dataset}.csv", index=False)


def _write(md: Markdown, reports: Path) -> Path:
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / "report.md"
    path.write_text(md.text())
    return path
