"""Audit anyone's age predictions: the study's breakdown by race, gender and age band.

    python -m stages.audit PREDICTIONS.csv --out DIR [--age-col C] [--pred-col C] [--argmax-col C]
        [--gender-col C] [--race-col C] [--filename-col C] [--gender-pred-col C] [--gender-prob-col C]
        [--gender-codes utkface|imdb_wiki|deepface] [--age-bands 0,16,31,46,61] [--min-age A] [--max-age A]
        [--split test] [--cluster-col C] [--reference REFERENCE.csv] [--correction] [--no-figures]

Columns default to common names (`age`, `age_pred`/`pre_age`/`Weighted_Avg`, `gender`, `race`,
`filename`, ...; case-insensitive). Without label columns, labels are read from UTKFace-style file
names. Race accepts UTKFace codes (0..4, also 0.0) and words (White, Black, ...). Gender, true or
predicted, accepts words (M/F, male, Woman, ...); numeric gender codes only with `--gender-codes`,
because conventions disagree (UTKFace: 0 = male; IMDB-Wiki and deepface's argmax: 0 = female): a table
with numeric gender and no flag is refused, never guessed. A missing gender or race column skips that
breakdown, and the report says so.

Verdicts are adjusted for multiplicity within each family (a breakdown × a metric: Holm, family-wise, for
short families; Benjamini–Hochberg, false discovery rate, for long ones; significance.csv says which).
Each worst − best gap is judged on its own interval adjusted over every pair of the groups compared
(gaps.csv, `difference_adjusted_ci_*`), beside an omnibus test of "all groups equal" (`p_all_equal`). With a
`cluster` column (or --cluster-col: faces of one person or look-alikes), the bootstrap draws clusters,
not faces. With --reference (another model's predictions of the same faces, read with the same column
flags), DIR/band_changes.csv holds each age band's paired change in error against it. With
`skin_lightness` / `skin_hue` columns (CIELAB L* and hue angle h* of each face's skin; optionally the
photo-quality columns of the measure stage), DIR/skin/ holds the breakdowns by skin band × gender, the
slopes on skin colour within race × gender and the quality-adjusted gaps; without them, one line says so.

Writes DIR/groups.csv (the groups contract), DIR/gaps.csv, DIR/significance.csv, DIR/metrics.json,
DIR/band_changes.csv (with --reference),
DIR/rejects.csv (rows with unusable labels, with the reason), DIR/tables/*.csv, DIR/plots/*.csv
(DVC plot data), DIR/figures/*.png and DIR/report.md. Age bands, bootstrap resamples, confidence and
minimum group size default to params.yaml's when it is in the current folder.

Bad input is one line naming the file and the fix, and exit status 2: a file that is empty, has a
header only, is not a table (a photo, a ragged CSV), an --out that cannot be a writable folder. A true
age over 122 years is rejected (`rejects.csv`); duplicate rows and implausible predictions are
evaluated as given, with a note in the report and on stderr. The outputs of an earlier audit into the
same --out are removed first, so no figure or correction.csv of another run is left beside the tables.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from stages.lib.core.cli import run_stage
from stages.lib.core.errors import UserError
from stages.lib.reporting import figures as plots
from stages.lib.evaluation.correction import correction_protocol
from stages.lib.core.labels import DEFAULT_AGE_BANDS
from stages.lib.evaluation.band_changes import band_changes
from stages.lib.evaluation.groups import evaluate
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.plot_data import write_plot_tables
from stages.lib.evaluation.results import headline_line, write_evaluation, write_json
from stages.lib.core.params import PARAMS_FILE, Params, load_params
from stages.lib.evaluation.predictions import (GENDER_CODES, PLAUSIBLE_MAX_AGE, ColumnError, Normalised,
                                               describe_codes, normalise_predictions, read_table)
from stages.lib.reporting.audit_report import AuditedTable, AuditSettings, audit_report
from stages.lib.reporting.skin_audit import audit_skin

# What an audit writes into --out: files, and folders of which only these files are ours.
OUTPUT_FILES = ("groups.csv", "gaps.csv", "significance.csv", "metrics.json", "rejects.csv", "correction.csv",
                "band_changes.csv",
                "report.md")
OUTPUT_FOLDERS = {"tables": "*.csv", "plots": "*.csv", "figures": "*.png", "skin": "*.csv"}
COLUMN_FLAGS = {   # flag -> field of predictions.DEFAULT_NAMES
    "age_col": "age", "pred_col": "age_pred", "argmax_col": "age_pred_argmax", "gender_col": "gender",
    "race_col": "race", "filename_col": "filename", "gender_pred_col": "gender_pred",
    "gender_prob_col": "gender_prob_female", "id_col": "id", "split_col": "split", "cluster_col": "cluster",
}


class AuditError(UserError, ValueError):
    """Input the audit cannot use (the table, --out); the message names the file and the fix."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path, help="CSV, TSV or parquet table of predictions")
    parser.add_argument("--out", type=Path, required=True, help="folder for the outputs (created)")
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's start-up lines (read by stages/lib/core/quiet.py; or FACE_BIAS_VERBOSE=1)")
    for flag, field in COLUMN_FLAGS.items():
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, metavar="C",
                            help=f"column holding {field} (default: a common name, see module docs)")
    parser.add_argument("--sep", help="CSV separator (default: ',' or tab for .tsv)")
    parser.add_argument("--gender-codes", choices=list(GENDER_CODES),
                        help="how numeric gender codes read, in the gender and gender prediction columns: "
                             + "; ".join(describe_codes(codes) for codes in GENDER_CODES)
                             + " (required when either column holds numbers)")
    parser.add_argument("--age-bands", help="lower edges, e.g. 0,16,31,46,61 (default: params.yaml age_bands)")
    parser.add_argument("--min-age", type=int, help="reject rows with a true age below this (default: none)")
    parser.add_argument("--max-age", type=int, help="reject rows with a true age above this (default: none)")
    parser.add_argument("--split", help="evaluate only rows of this split (needs a split column)")
    parser.add_argument("--reference", type=Path,
                        help="another model's predictions of the same faces (same columns): writes band_changes.csv, "
                             "each age band's paired change against it")
    parser.add_argument("--bootstrap", type=int, help="bootstrap resamples (default: params evaluate.bootstrap)")
    parser.add_argument("--confidence", type=float, help="CI level (default: params evaluate.confidence)")
    parser.add_argument("--min-group-size", type=int, help="flag smaller groups (default: params evaluate.min_group_size)")
    parser.add_argument("--seed", type=int, help="bootstrap seed (default: params seed)")
    parser.add_argument("--correction", action="store_true",
                        help="also fit the study's post-hoc correction models (R9): on the val split and judged "
                             "on test when the table has both, else 5-fold cross-fitted")
    parser.add_argument("--no-figures", action="store_true", help="tables and report only (faster, for batches)")
    parser.add_argument("--title", help="name used in titles (default: the file name)")
    return parser.parse_args(argv)


def parse_bands(text: str) -> tuple[int, ...]:
    try:
        edges = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise AuditError(f"--age-bands {text!r}: give whole numbers separated by commas, e.g. 0,16,31,46,61") from None
    if not edges or edges[0] < 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise AuditError(f"--age-bands {text!r}: lower edges must be non-negative and strictly increasing")
    return edges


def settings_from(args: argparse.Namespace, params: Params | None) -> AuditSettings:
    """Flags first, then params.yaml (when present), then the study's defaults."""
    base = params.evaluate if params else None
    return AuditSettings(
        edges=parse_bands(args.age_bands) if args.age_bands else tuple(params.age_bands if params else DEFAULT_AGE_BANDS),
        bootstrap=Bootstrap(
            resamples=args.bootstrap if args.bootstrap is not None else (base.bootstrap if base else 1000),
            confidence=args.confidence if args.confidence is not None else (base.confidence if base else 0.95),
            seed=args.seed if args.seed is not None else (params.seed if params else 42)),
        min_group_size=args.min_group_size if args.min_group_size is not None else (base.min_group_size if base else 30),
        source=f"{PARAMS_FILE}" if params else "built-in defaults (no params.yaml here)",
    )


def read_predictions(path: Path, sep: str | None) -> pd.DataFrame:
    """The predictions table; AuditError when it is empty, has a header only, or is not a table at all."""
    try:
        raw = read_table(path, sep)
    except pd.errors.EmptyDataError:
        raise AuditError(f"{path} is empty (no header, no rows): pass a CSV, TSV or parquet table with one row "
                         "per face") from None
    except UnicodeDecodeError:
        raise AuditError(f"{path} is not a text table (it is not UTF-8 text; an image or a binary file?): pass "
                         "the CSV, TSV or parquet table of predictions") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1].removeprefix("Error tokenizing data. C error: ")
        raise AuditError(f"{path} is not a readable table ({detail}): every line needs as many fields as the "
                         "header; fix the file, or give its separator with --sep") from None
    except (ValueError, OSError) as exc:  # parquet: pyarrow's errors are ValueError or OSError subclasses
        if isinstance(exc, FileNotFoundError):
            raise
        raise AuditError(f"{path} cannot be read as a table ({str(exc).strip().splitlines()[0]}): pass a CSV, "
                         "TSV or parquet table of predictions") from None
    if raw.empty:
        raise AuditError(f"{path} has a header ({', '.join(map(str, raw.columns))}) but no rows: nothing to audit")
    return raw


def prepare_out(out: Path) -> None:
    """Make --out a writable folder (AuditError naming the fix when it cannot be), and remove what an
    earlier audit wrote there, so that every file in it is this run's."""
    if out.exists() and not out.is_dir():
        raise AuditError(f"--out {out} is a file: give a folder (it is created when missing)")
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise AuditError(f"--out {out}: {blocking} is a file, so no folder can be made under it; give another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuditError(f"--out {out} cannot be created ({exc.strerror}): give a folder you can write to") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise AuditError(f"--out {out} is not writable: give a folder you can write to")
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    for folder, pattern in OUTPUT_FOLDERS.items():
        for path in (out / folder).glob(pattern):
            path.unlink()


def input_notes(raw: pd.DataFrame, normalised: Normalised) -> list[str]:
    """Facts about the table the report and the terminal should state: repeated rows and faces, and
    predictions no human age could be (each still evaluated as given)."""
    notes = []
    repeated_rows = int(raw.duplicated().sum())
    if repeated_rows:
        notes.append(f"{repeated_rows:,} rows repeat an earlier row exactly, and each is evaluated: a face listed "
                     "twice counts twice; de-duplicate the table if that is a mistake")
    repeated_ids = int(normalised.frame["id"].duplicated().sum())  # ids are row numbers without an id column
    if repeated_ids > repeated_rows:
        notes.append(f"{repeated_ids:,} evaluated rows repeat the id or file name of an earlier row")
    predictions = normalised.frame["age_pred"]
    wild = predictions[(predictions < 0) | (predictions > PLAUSIBLE_MAX_AGE)]
    if len(wild):
        notes.append(f"{len(wild):,} age predictions lie outside 0..{PLAUSIBLE_MAX_AGE} years ({wild.min():g} to "
                     f"{wild.max():g}): evaluated as given")
    return notes


def reference_faces(args: argparse.Namespace, requested: dict, kept: pd.DataFrame) -> pd.DataFrame:
    """The --reference table, read like the predictions, restricted as they are (split); AuditError when
    it shares no face (id or file name) with them."""
    reference = normalised_table(read_predictions(args.reference, args.sep), args.reference, requested, args).frame
    if args.split:
        reference = reference[reference["split"] == args.split.lower()]
    if not reference["id"].isin(kept["id"]).any():
        raise AuditError(f"--reference {args.reference} shares no face with {args.predictions} (matched by the id "
                         "or file-name column): give predictions of the same faces")
    return reference


def normalised_table(raw: pd.DataFrame, path: Path, requested: dict, args: argparse.Namespace) -> Normalised:
    """The table in the predictions contract; AuditError naming the file for a column it lacks."""
    try:
        return normalise_predictions(raw, requested, dataset=args.predictions.stem, min_age=args.min_age,
                                     max_age=args.max_age, gender_codes=args.gender_codes)
    except ColumnError as error:
        raise AuditError(f"{path}: {error}") from None


def audit(args: argparse.Namespace) -> dict:
    params = load_params() if PARAMS_FILE.exists() else None
    settings = settings_from(args, params)
    raw = read_predictions(args.predictions, args.sep)
    requested = {field: getattr(args, flag) for flag, field in COLUMN_FLAGS.items()}
    title = args.title or args.predictions.name
    normalised = normalised_table(raw, args.predictions, requested, args)
    extra_notes = input_notes(raw, normalised)
    normalised.notes.extend(extra_notes)
    for note in extra_notes:
        print(f"audit: note: {note}", file=sys.stderr)
    out = args.out
    prepare_out(out)
    normalised.rejects.to_csv(out / "rejects.csv", index=False)
    kept = normalised.frame
    if args.split:
        kept = kept[kept["split"] == args.split.lower()]
    if kept.empty:
        raise AuditError(f"{args.predictions}: no row left to evaluate ({len(normalised.rejects):,} rejected; "
                         f"reasons in {out / 'rejects.csv'})")
    evaluation = evaluate(kept, settings.edges, settings.bootstrap, settings.min_group_size, series=title)
    write_evaluation(evaluation, out)
    write_plot_tables(evaluation, lambda kind: out / "plots" / f"{kind}.csv")
    figures = {} if args.no_figures else plots.write_figures(evaluation, out / "figures", title)
    if args.reference is not None:
        reference_rows = reference_faces(args, requested, kept)
        band_changes(kept, reference_rows, settings.edges, settings.bootstrap,
                     dataset=args.predictions.stem).to_csv(
            out / "band_changes.csv", index=False)
    correction = correction_protocol(normalised.frame, kept, settings.bootstrap) if args.correction else None
    if correction is not None:
        correction[0].to_csv(out / "correction.csv", index=False)
    table = AuditedTable(args.predictions, title, len(raw), normalised, kept, args.gender_codes)
    report = audit_report(table, evaluation, settings, out=out, figures=figures, correction=correction)
    report += audit_skin(raw, normalised, kept, out, edges=settings.edges, bootstrap=settings.bootstrap,
                         min_group_size=settings.min_group_size)
    (out / "report.md").write_text(report)
    metrics = {**evaluation.overall, "rows_read": len(raw), "rows_rejected": len(normalised.rejects),
               "gender_codes": normalised.gender_codes}
    write_json(metrics, out / "metrics.json")
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_stage("audit", lambda: _run(args), timed=False)


def _run(args: argparse.Namespace) -> int:
    """The audit, then its one summary line; returns the faces evaluated."""
    metrics = audit(args)
    line = f"{args.predictions.name}: n={metrics['n']:,} {headline_line(metrics)}"
    if "mae_argmax" in metrics:
        line += f" (argmax MAE {metrics['mae_argmax']:.2f})"
    print(line + f"; {metrics['rows_rejected']:,} rows rejected; report: {args.out / 'report.md'}")
    return metrics["n"]


if __name__ == "__main__":
    sys.exit(main())
