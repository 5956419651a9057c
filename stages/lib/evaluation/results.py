"""An experiment's evaluation on disk: written by the evaluate stage, read back by report, compare and audit.

    <experiment>/evaluation/<dataset>/groups.csv      the groups.csv contract (groups.GROUP_COLUMNS)
    <experiment>/evaluation/<dataset>/gaps.csv        worst vs best group per breakdown
    <experiment>/evaluation/<dataset>/significance.csv
    <experiment>/evaluation/<dataset>/metrics.json    overall figures, in full
    <experiment>/evaluation/<dataset>/tables/*.csv    the study's tables and the data behind the figures
    <experiment>/evaluation/<dataset>/worst_groups.csv  overall and worst-group error, the race x gender
                                                      gap, and each one's change against `retrained`
                                                      on the same faces (worst_groups.SUMMARY_COLUMNS)
    <experiment>/evaluation/<dataset>/band_changes.csv  rebalancing experiments only (oversample, reweight,
                                                      mitigation): per age band, the paired change
                                                      against its twin (params' `reference`, else
                                                      `retrained`; column `reference`)
    <experiment>/evaluation/<dataset>/skin/           the skin-colour and photo-quality analysis of the
                                                      test set's predictions (skin_analysis.py), where
                                                      the measure stage's table has a face of it
    <experiment>/evaluation/rejects.csv               rows whose labels could not be read (with reason)
    <experiment>/metrics.json                         the experiment's figures per test set (`headline`);
                                                      the report stage draws the study's one DVC metrics
                                                      file from them (reporting/headline.py)
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd

from stages.lib.core.params import Experiment, Params
from stages.lib.core.files import write_json
from stages.lib.core.schema import PREDICTION_COLUMNS, SchemaError, require_columns
from stages.lib.evaluation.band_changes import band_changes, is_rebalancing
from stages.lib.evaluation.disaggregation import contract_groups
from stages.lib.evaluation.groups import Evaluation, evaluate
from stages.lib.evaluation.source_bands import ages_are_bands, exact_age_rows
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.plot_data import write_dvc_plots
from stages.lib.evaluation.predictions import normalise_predictions
from stages.lib.evaluation.skin_analysis import analyse, analysis_folder, skin_inputs
from stages.lib.evaluation.worst_groups import REFERENCE, against_reference

POOLED = "all"
GROUPS_DETAIL = "groups_detail"   # groups.csv plus the extra intervals (groups.EXTRA_COLUMNS)
HEADLINE_ATTRIBUTES = ("race", "gender", "race*gender")
WORST_GROUPS = "worst_groups"
BAND_CHANGES = "band_changes"
# Of worst_groups.csv, in the headline: the worst group's figures and their change against the reference.
HEADLINE_WORST = ("worst_group_mae", "worst_group_accuracy")


def bootstrap_from(params: Params) -> Bootstrap:
    return Bootstrap(resamples=params.evaluate.bootstrap, confidence=params.evaluate.confidence, seed=params.seed)


def write_evaluation(evaluation: Evaluation, folder: Path) -> None:
    """groups.csv (contract columns), gaps.csv, significance.csv, metrics.json and tables/*.csv."""
    folder = Path(folder)
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    contract_groups(evaluation.groups).to_csv(folder / "groups.csv", index=False)
    evaluation.gaps.to_csv(folder / "gaps.csv", index=False)
    evaluation.significance.to_csv(folder / "significance.csv", index=False)
    write_json(evaluation.overall, folder / "metrics.json")
    evaluation.groups.to_csv(folder / "tables" / f"{GROUPS_DETAIL}.csv", index=False)
    for name, table in evaluation.tables.items():
        table.to_csv(folder / "tables" / f"{name}.csv", index=False)


def load_evaluation(folder: Path, edges, confidence: float = 0.95) -> Evaluation:
    """An Evaluation back from the files `write_evaluation` wrote."""
    folder = Path(folder)
    if not (folder / "metrics.json").exists():
        raise FileNotFoundError(f"{folder / 'metrics.json'} not found: run the evaluate stage first")
    tables = {path.stem: _read_csv(path) for path in sorted((folder / "tables").glob("*.csv"))}
    groups = tables.pop(GROUPS_DETAIL)
    return Evaluation(groups=groups, gaps=_read_csv(folder / "gaps.csv"),
                      significance=_read_csv(folder / "significance.csv"),
                      overall=json.loads((folder / "metrics.json").read_text()), edges=tuple(edges), tables=tables,
                      confidence=confidence)


def load_evaluations(folder: Path, edges, confidence: float = 0.95) -> dict[str, Evaluation]:
    """Every test set's evaluation under `folder` ({dataset: Evaluation}); {} when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {path.name: load_evaluation(path, edges, confidence)
            for path in sorted(folder.iterdir()) if (path / "metrics.json").exists()}


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def headline(evaluation: Evaluation) -> dict:
    """The few numbers `dvc exp show` and `dvc metrics diff` show for one test set: n, MAE, gender
    accuracy and the worst-minus-best MAE gap per attribute; where ages are bands (FairFace), age-band
    accuracy instead of MAE and its gaps. Everything else stays in the evaluation folder."""
    overall, gaps = evaluation.overall, evaluation.gaps
    bands = ages_are_bands(overall)
    figures = {"n": overall["n"], "mae": None if bands else _rounded(overall.get("mae"), 3),
               "gender_accuracy": _rounded(overall.get("gender_accuracy"), 4),
               "age_band_accuracy": _rounded(overall.get("age_band_accuracy"), 4)}
    for attribute in HEADLINE_ATTRIBUTES if not bands else ():
        rows = gaps[(gaps["attribute"] == attribute) & (gaps["metric"] == "mae")] if not gaps.empty else gaps
        if len(rows):
            figures[f"mae_gap_{attribute.replace('*', '_x_')}"] = _rounded(rows["difference"].iloc[0], 3)
    return {key: value for key, value in figures.items() if value is not None}


def headline_line(overall: dict) -> str:
    """`MAE m RMSE r`, or `age-band accuracy a%` where ages are bands (no MAE there)."""
    if ages_are_bands(overall):
        return f"age-band accuracy {overall['age_band_accuracy']:.1%}"
    return f"MAE {overall['mae']:.2f} RMSE {overall['rmse']:.2f}"


def worst_group_headline(summary: pd.DataFrame) -> dict:
    """From one test set's worst_groups rows: the worst race x gender group's MAE and gender accuracy,
    and each one's change against the reference (`<statistic>_vs_retrained`)."""
    figures = {}
    for row in summary[summary["statistic"].isin(HEADLINE_WORST)].itertuples():
        figures[row.statistic] = _rounded(row.value, 4)
        figures[f"{row.statistic}_vs_{REFERENCE}"] = _rounded(row.change, 4)
    return {key: value for key, value in figures.items() if value is not None}


def load_worst_groups(folder: Path) -> pd.DataFrame:
    """Every test set's worst_groups.csv under an experiment's evaluation folder, stacked (empty if none)."""
    paths = sorted(Path(folder).glob(f"*/{WORST_GROUPS}.csv"))
    return pd.concat([_read_csv(path) for path in paths], ignore_index=True) if paths else pd.DataFrame()


def write_skin_analyses(test: pd.DataFrame, params: Params, out: Path, *, breakdown_only: bool) -> list[str]:
    """Each test set's skin analysis of the `test` predictions in out/<dataset>/skin/ (replacing an earlier
    one), for the sets with a measured face; none without the measure stage's table. Returns those sets."""
    for dataset in test["dataset"].unique():
        shutil.rmtree(analysis_folder(out, str(dataset)), ignore_errors=True)
    inputs = skin_inputs(params)
    if inputs is None:
        return []
    runs, bootstrap = inputs.measured_runs(test), bootstrap_from(params)
    for dataset, rows in runs.items():
        analyse(rows, inputs.bands, bootstrap, params.evaluate.min_group_size, edges=params.age_bands,
                breakdown_only=breakdown_only).write(analysis_folder(out, dataset))
    return list(runs)


def skin_breakdown_only(name: str, experiment: Experiment) -> bool:
    """Controls and mitigations get the skin breakdowns alone: the report's skin section discusses the
    published model, the reference and the best of the study's models, never one of these, and the
    slopes and adjusted gaps are the costly part (reporting/roles.py says which model is which)."""
    outsider = experiment.control or experiment.mitigation is not None
    return outsider and name != REFERENCE and not experiment.is_baseline


def _reference_predictions(params: Params, name: str = REFERENCE) -> pd.DataFrame | None:
    """Experiment `name`'s predictions, normalised; None where it is not in the run or has none yet."""
    path = params.paths.experiments / name / "predictions.parquet"
    if name not in params.experiments or not path.exists():
        return None
    table = read_predictions(path)
    return normalise_predictions(table, {f: f for f in PREDICTION_COLUMNS if f in table.columns},
                                 experiment=name).frame


def _rounded(value, digits: int):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def read_predictions(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the train stage for this experiment first "
                                "(`dvc repro train@<experiment>`)")
    frame = pd.read_parquet(path)
    try:
        require_columns(frame, PREDICTION_COLUMNS, f"predictions {path}")
    except SchemaError as error:
        raise SchemaError(f"{error}; the train stage must write schema.PREDICTION_COLUMNS") from None
    return frame


def pooled_rows(test: pd.DataFrame, params: Params) -> pd.DataFrame:
    """The test rows pooled as `all`: exact ages only (band-only ages, FairFace, are never pooled with
    exact ones), and never a set cut to a maximum age below the labels' (`utkface_children`): it is evaluated apart, and
    pooling it with the adults it was cut from would make a mixture neither population is."""
    apart = [name for name, dataset in params.datasets.items()
             if dataset.options.get("max_age") is not None and int(dataset.options["max_age"]) < params.labels.max_age]
    exact = exact_age_rows(test)
    return exact[~exact["dataset"].isin(apart)]


def evaluate_experiment(experiment: str, params: Params) -> dict:
    """Evaluate the test split of `<experiments>/<experiment>/predictions.parquet` per test set (and `all`
    pooled when there are several to pool: pooled_rows); write the folder, DVC plot data and headline
    metrics. Returns {dataset: overall figures}."""
    reports = params.paths.experiments
    table = read_predictions(reports / experiment / "predictions.parquet")
    requested = {field: field for field in PREDICTION_COLUMNS if field in table.columns}
    normalised = normalise_predictions(table, requested, experiment=experiment)
    out = reports / experiment / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    normalised.rejects.to_csv(out / "rejects.csv", index=False)
    test = normalised.frame[normalised.frame["split"] == "test"]
    if test.empty:
        splits = sorted(normalised.frame["split"].unique())
        raise SchemaError(f"{reports / experiment / 'predictions.parquet'} has no test rows (splits: {splits})")
    datasets = list(dict.fromkeys(test["dataset"]))
    subsets = {name: test[test["dataset"] == name] for name in datasets}
    exact = pooled_rows(test, params)
    if exact["dataset"].nunique() > 1:
        subsets[POOLED] = exact
    for stale in [folder for folder in out.iterdir() if folder.is_dir() and folder.name not in subsets]:
        shutil.rmtree(stale)   # a test set (or the pooled one) an earlier run evaluated and this one does not
    bootstrap = bootstrap_from(params)
    overall, headlines = {}, {}
    for name, rows in subsets.items():
        evaluation = evaluate(rows, params.age_bands, bootstrap, params.evaluate.min_group_size,
                              series=f"{experiment} on {name}")
        write_evaluation(evaluation, out / name)
        write_dvc_plots(evaluation, params.paths.plots, experiment, name)
        overall[name], headlines[name] = evaluation.overall, headline(evaluation)
    reference = _reference_predictions(params)
    summary = against_reference(normalised.frame, reference, experiment, bootstrap,
                                min_group_size=params.evaluate.min_group_size)
    twin_name = params.reference_of(experiment) or REFERENCE   # band changes are against the experiment's twin
    twin = reference if twin_name == REFERENCE else _reference_predictions(params, twin_name)
    if twin is not None and experiment != twin_name and is_rebalancing(params.experiments[experiment]):
        twin_test = twin[twin["split"] == "test"]
        for name in datasets:
            band_changes(subsets[name], twin_test[twin_test["dataset"] == name], params.age_bands,
                         bootstrap, dataset=name).assign(reference=twin_name).to_csv(
                out / name / f"{BAND_CHANGES}.csv", index=False)
    for name, rows in summary.groupby("dataset", sort=False):
        rows.to_csv(out / str(name) / f"{WORST_GROUPS}.csv", index=False)
        headlines[name].update(worst_group_headline(rows))
    write_skin_analyses(table[table["split"] == "test"], params, out,
                        breakdown_only=skin_breakdown_only(experiment, params.experiments[experiment]))
    headlines["rejected_rows"] = int(len(normalised.rejects))
    write_json(headlines, reports / experiment / "metrics.json")
    return overall
