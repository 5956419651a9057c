"""Stage `probe`: is the bias in the embedding? What each backbone's features hold, and what is left
of the gap when the heads are trained on group-balanced data.

    python -m stages.probe

For the pipeline's backbone and each of `compare_backbones` (their features as the features and compare
stages cached them), on the finetune dataset's grouped split:
- a linear probe of race and one of gender (stages/lib/heads/probe.py), fitted on train, stopped on
  val, judged on the test split of each evaluate dataset by balanced accuracy (chance: 1 / classes);
- heads from the compare stage's seeded random start and budget trained on the train split
  rebalanced to equal counts per race × gender group (`balanced`, target mean, the `balanced`
  experiment's default), beside the compare stage's heads on the split as it is (`plain`; trained
  here when the backbone is not compared), and the race × gender gap of each with the change of
  `balanced` against `plain` on the same test faces (stages/lib/evaluation/worst_groups.py). On the
  pipeline's own backbone these heads are not trained where the experiments `retrained` and a
  balanced mitigation already trained them from the same random start (balanced_experiment): the
  report reads those experiments instead.
Writes, in params.paths.probe:
    probes.csv      one row per backbone, attribute and test set (PROBE_COLUMNS)
    balanced.csv    per backbone: worst_groups' summary of plain and balanced
    metrics.json    per backbone and test set: probe balanced accuracies and the gaps, for `dvc metrics`
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from stages.lib.backbones.store import open_features
from stages.lib.core.files import write_json
from stages.lib.core.params import Experiment, Params, load_params
from stages.lib.core.cli import run_stage
from stages.lib.core.schema import read_manifest
from stages.lib.evaluation.probes import BALANCED_FILE, PROBE_COLUMNS, PROBES_FILE, probe_summary
from stages.lib.evaluation.results import bootstrap_from
from stages.lib.evaluation.worst_groups import RANDOM_START, SUMMARY_COLUMNS, summarise_experiments
from stages.lib.heads.data import HeadData, role_splits
from stages.lib.heads.loop import configure_determinism
from stages.lib.heads.methods import BALANCED_FROM_RANDOM, FROM_RANDOM, fit_experiment
from stages.lib.heads.predicting import predict_heads
from stages.lib.heads.probe import fit_probe, probe_predictions
from stages.lib.heads.starts import start_for
from stages.lib.splitting.identity import holds_features_of

ATTRIBUTES = ("race", "gender")


def probed_backbones(params: Params) -> list[tuple[str, Params, Path]]:
    """(label, params with that backbone, features folder): the pipeline's backbone first (under its
    compare label when it is compared), then every other compared backbone."""
    compared = {label: params.model_copy(update={"backbone": params.compared_backbone(label)})
                for label in params.compare_backbones}
    own = next((label for label, p in compared.items() if p.backbone == params.backbone), params.backbone.name)
    probed = [(own, params, params.paths.features)]
    for label, other in compared.items():
        if other.backbone != params.backbone:
            folder = (params.paths.identity if holds_features_of(params, other.backbone)
                      else params.paths.compare_features / label / "features")
            if not folder.exists():
                raise FileNotFoundError(f"{folder} not found: run the compare stage first (`dvc repro compare`)")
            probed.append((label, other, folder))
    return probed


BALANCED = "balanced"   # dvc.yaml's probe stage reads experiments.balanced and experiments.retrained_random


def balanced_experiment(params: Params) -> str | None:
    """The experiment pair that already trained this stage's plain and balanced heads on the pipeline's
    own backbone: RANDOM_START and BALANCED (a `balanced` mitigation over race × gender, target mean),
    both from the same seeded random start on the grouped split; BALANCED, or None."""
    reference, balanced = params.experiments.get(RANDOM_START), params.experiments.get(BALANCED)
    if reference is None or balanced is None:
        return None
    same_start = all(start_for(e.init, params.backbone) == "random" and e.split == "grouped"
                     for e in (reference, balanced))
    return BALANCED if same_start and balanced.mitigation == BALANCED_FROM_RANDOM.mitigation else None


def heads_predictions(data: HeadData, test: pd.DataFrame, experiment: Experiment, name: str) -> pd.DataFrame:
    """Test predictions of heads fitted as `experiment` (from the compare stage's seeded random start)."""
    models = fit_experiment(data, experiment).heads
    return predict_heads(models, data.features, test, batch_size=data.params.train.batch_size, experiment=name)


def probe_backbone(label: str, params: Params, folder: Path, manifest: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(probe rows, plain-vs-balanced summary rows) of one backbone."""
    configure_determinism(params.seed)
    bootstrap = bootstrap_from(params)
    features = open_features(folder)
    train, val = role_splits(manifest, params.roles.finetune, "finetune")
    test = manifest[manifest["dataset"].isin(params.roles.evaluate) & (manifest["split"] == "test")]
    data = HeadData(params, features, train, val)
    probes = []
    for attribute in ATTRIBUTES:
        model, classes = fit_probe(data, attribute)
        predicted = probe_predictions(model, classes, features, test, attribute=attribute,
                                      batch_size=params.train.batch_size)
        probes.append(probe_summary(predicted, label, attribute, bootstrap))
    probes = pd.concat(probes, ignore_index=True)
    if folder == params.paths.features and balanced_experiment(params):
        return probes, pd.DataFrame(columns=[*SUMMARY_COLUMNS, "backbone"])   # the experiments hold these heads
    compared = params.paths.compare_reports / label / "predictions.parquet"
    plain = (pd.read_parquet(compared) if label in params.compare_backbones and compared.exists()
             else heads_predictions(data, test, FROM_RANDOM, "plain"))
    balanced = heads_predictions(data, test, BALANCED_FROM_RANDOM, "balanced")
    summary, _ = summarise_experiments({"plain": plain, "balanced": balanced}, "plain", bootstrap,
                                       params.evaluate.min_group_size)
    return probes, summary.assign(backbone=label)


def headline(probes: pd.DataFrame, balanced: pd.DataFrame) -> dict:
    """metrics.json: per backbone and test set, each probe's balanced accuracy and the MAE and accuracy
    gaps of plain and balanced heads."""
    metrics: dict = {}
    for row in probes.itertuples():
        metrics.setdefault(row.backbone, {}).setdefault(row.dataset, {})[f"{row.attribute}_probe"] = round(
            row.balanced_accuracy, 4)
    for row in balanced[balanced["statistic"].isin(["mae_gap", "accuracy_gap"])].itertuples():
        if pd.notna(row.value):
            metrics.setdefault(row.backbone, {}).setdefault(row.dataset, {})[f"{row.statistic}_{row.experiment}"] = round(
                float(row.value), 4)
    return metrics


def main() -> int:
    return run_stage("probe", _run)


def _run() -> int:
    """Linear probes and balanced heads per backbone, in paths.probe; returns the faces probed."""
    params = load_params()
    manifest = read_manifest(params.paths.manifest)
    results = [probe_backbone(label, p, folder, manifest) for label, p, folder in probed_backbones(params)]
    probes = pd.concat([r[0] for r in results], ignore_index=True)[PROBE_COLUMNS]
    balanced = pd.concat([r[1] for r in results], ignore_index=True)
    out = params.paths.probe
    out.mkdir(parents=True, exist_ok=True)
    probes.to_csv(out / PROBES_FILE, index=False)
    balanced[["backbone", *balanced.columns.drop("backbone")]].to_csv(out / BALANCED_FILE, index=False)
    write_json(headline(probes, balanced), out / "metrics.json")
    for row in probes.itertuples():
        print(f"probe: {row.backbone} {row.attribute} on {row.dataset}: balanced accuracy {row.balanced_accuracy:.1%} "
              f"[{row.ci_low:.1%}, {row.ci_high:.1%}], chance {row.chance:.1%}")
    return len(manifest)


if __name__ == "__main__":
    sys.exit(main())
