"""Stage evaluate@EXPERIMENT: the breakdown of one experiment's test predictions, per dataset.

    python -m stages.evaluate EXPERIMENT

Reads `reports/<exp>/predictions.parquet` (written by train@exp, schema.PREDICTION_COLUMNS), keeps the
test split, and for each dataset in it (and `all` of them pooled, when there are several) writes

    reports/<exp>/evaluation/<dataset>/groups.csv      the groups.csv contract (metrics.GROUP_COLUMNS)
    reports/<exp>/evaluation/<dataset>/gaps.csv        worst vs best group per breakdown
    reports/<exp>/evaluation/<dataset>/significance.csv
    reports/<exp>/evaluation/<dataset>/metrics.json    overall figures
    reports/<exp>/evaluation/<dataset>/tables/*.csv    the study's tables and the data behind the figures
    reports/<exp>/evaluation/rejects.csv               rows whose labels could not be read (with reason)
    reports/<exp>/metrics.json                         {dataset: overall figures}, for `dvc metrics`
    reports/plots/<kind>/<exp>/<dataset>.csv           DVC plot data (kind first, so that one top-level
                                                       `plots:` entry per kind covers every experiment)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from stages.lib.reporting import figures as plots
from stages.lib.evaluation.groups import Bootstrap, Evaluation, contract_groups, evaluate
from stages.lib.core.params import Params, load_params
from stages.lib.evaluation.predictions import normalise_predictions
from stages.lib.core.schema import PREDICTION_COLUMNS, SchemaError, require_columns

REPORTS = Path("reports")
PLOT_KINDS = ("predicted_vs_actual", "error_by_age_gender", "error_by_age_race", "share_by_age_gender",
              "mae_by_group")
POOLED = "all"
GROUPS_DETAIL = "groups_detail"   # groups.csv plus the extra intervals (metrics.EXTRA_COLUMNS)


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
    """An Evaluation back from the files `write_evaluation` wrote (for the report stage)."""
    folder = Path(folder)
    if not (folder / "metrics.json").exists():
        raise FileNotFoundError(f"{folder / 'metrics.json'} not found: run the evaluate stage first")
    tables = {path.stem: pd.read_csv(path, keep_default_na=False, na_values=[""])
              for path in sorted((folder / "tables").glob("*.csv"))}
    groups = tables.pop(GROUPS_DETAIL)
    return Evaluation(groups=groups, gaps=pd.read_csv(folder / "gaps.csv", keep_default_na=False, na_values=[""]),
                      significance=pd.read_csv(folder / "significance.csv", keep_default_na=False, na_values=[""]),
                      overall=json.loads((folder / "metrics.json").read_text()), edges=tuple(edges), tables=tables,
                      confidence=confidence)


def write_json(data, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_dvc_plots(evaluation: Evaluation, plots_root: Path, experiment: str, dataset: str) -> list[Path]:
    """`plots_root/<kind>/<experiment>/<dataset>.csv` for every kind (header only where no data)."""
    written = []
    for kind, table in plots.dvc_tables(evaluation).items():
        path = Path(plots_root) / kind / experiment / f"{dataset}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        written.append(path)
    return written


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


def evaluate_experiment(experiment: str, params: Params, reports: Path = REPORTS) -> dict:
    """Evaluate the test split of `reports/<experiment>/predictions.parquet`; returns {dataset: overall}."""
    if experiment not in params.experiments:
        raise SystemExit(f"experiment {experiment!r} is not in params.yaml; known: {', '.join(params.experiments)}")
    table = read_predictions(reports / experiment / "predictions.parquet")
    requested = {field: field for field in PREDICTION_COLUMNS if field in table.columns}
    normalised = normalise_predictions(table, requested, experiment=experiment)
    out = reports / experiment / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    normalised.rejects.to_csv(out / "rejects.csv", index=False)
    test = normalised.frame[normalised.frame["split"] == "test"]
    if test.empty:
        splits = sorted(normalised.frame["split"].unique())
        raise SystemExit(f"{reports / experiment / 'predictions.parquet'} has no test rows (splits: {splits})")
    datasets = list(dict.fromkeys(test["dataset"]))
    subsets = {name: test[test["dataset"] == name] for name in datasets}
    if len(datasets) > 1:
        subsets[POOLED] = test
    bootstrap = bootstrap_from(params)
    metrics = {}
    for name, rows in subsets.items():
        evaluation = evaluate(rows, params.age_bands, bootstrap, params.evaluate.min_group_size,
                              series=f"{experiment} on {name}")
        write_evaluation(evaluation, out / name)
        write_dvc_plots(evaluation, reports / "plots", experiment, name)
        metrics[name] = evaluation.overall
    metrics["rejected_rows"] = int(len(normalised.rejects))
    write_json(metrics, reports / experiment / "metrics.json")
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="an experiment named in params.yaml `experiments`")
    args = parser.parse_args(argv)
    params = load_params()
    metrics = evaluate_experiment(args.experiment, params)
    for dataset, figures in metrics.items():
        if isinstance(figures, dict):
            print(f"{args.experiment} on {dataset}: n={figures['n']:,} MAE {figures['mae']:.2f} "
                  f"RMSE {figures['rmse']:.2f}")


if __name__ == "__main__":
    main()
