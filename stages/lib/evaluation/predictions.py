"""Reading any table of age predictions into the predictions contract (schema.PREDICTION_COLUMNS).

The evaluation runs on our own `reports/<exp>/predictions.parquet` and on anyone else's table, so the
reading is forgiving about names and strict about values:

- columns are found by an explicit name (`--age-col C`, case-insensitive) or else by the first of a
  few common names (`age`, `pre_age`, `Weighted_Avg`, ...); unknown extra columns are ignored;
- labels come from their columns or, where a label column is absent, from UTKFace-style file names
  (`{age}_{gender}_{race}_{datetime}.jpg[.chip.jpg]`); race accepts the UTKFace integer codes (also as
  floats such as `0.0`) and words (`labels.normalise_*`);
- gender (true or predicted) in a column accepts words; numeric codes only with a named convention
  (`gender_codes`, the audit's `--gender-codes`), since conventions disagree: UTKFace writes 0 for
  male, IMDB-Wiki and deepface's argmax 0 for female. A code is never guessed: without the convention
  the table is refused (ColumnError naming the flag). File names are UTKFace's, read as such;
- a row whose age, prediction or a given gender/race cannot be read goes to the rejects with its
  reason, never dropped silently; a row with no gender or race (empty cell, a file name without the
  race field) is kept as unknown and left out of that breakdown only; a label column that is
  entirely empty counts as absent, and its breakdown is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Callable


import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError
from stages.lib.core.labels import LabelError, as_code, normalise_age, normalise_gender, normalise_race
from stages.lib.datasets.utkface import name_fields
from stages.lib.core.schema import BAND_COLUMN, CLUSTER_COLUMN, PREDICTION_COLUMNS

# Field -> names tried in order (case-insensitive) when the user names no column for it.
DEFAULT_NAMES: dict[str, tuple[str, ...]] = {
    "age": ("age", "true_age", "age_true", "actual_age", "real_age"),
    "age_pred": ("age_pred", "pred_age", "pre_age", "predicted_age", "age_predicted", "weighted_avg",
                 "expected_age", "prediction"),
    "age_pred_argmax": ("age_pred_argmax", "argmax", "age_argmax", "pred_age_argmax"),
    "gender": ("gender", "sex"),
    "race": ("race", "ethnicity"),
    "filename": ("filename", "file_name", "file", "image", "image_path", "img", "path"),
    "gender_pred": ("gender_pred", "pred_gender", "predicted_gender", "gender_predicted"),
    "gender_prob_female": ("gender_prob_female", "prob_female", "p_female"),
    "id": ("id",),
    "dataset": ("dataset",),
    "split": ("split",),
    "experiment": ("experiment",),
    "cluster": ("cluster",),     # optional: faces that are not independent (one person); resampled together
}
LABEL_FIELDS = ("age", "gender", "race")
PLAUSIBLE_MAX_AGE = 122  # the oldest documented human: an older true age is a typo or a code, never a label
OPTIONAL_LABELS = ("gender", "race")   # a row without them is kept (unknown); a row without age is not
REJECTS_LEAD_COLUMNS = ["row", "reason"]
# Numeric gender codes per convention (--gender-codes): they disagree, so none is assumed.
GENDER_CODES: dict[str, dict[int, str]] = {
    "utkface": {0: "male", 1: "female"},      # UTKFace's file names and the tables built from them
    "imdb_wiki": {0: "female", 1: "male"},    # IMDB-Wiki's `gender` field
    "deepface": {0: "female", 1: "male"},     # the argmax of deepface's (Woman, Man) gender output
}


class ColumnError(UserError, ValueError):
    """A column the user named, or one the evaluation cannot do without, is not in the table."""


@dataclass(frozen=True)
class Normalised:
    """A predictions table in contract form, the rows refused with their reasons, and what was done.

    `sources` says where each field came from (e.g. `age: column 'age'`, `race: file names in
    'filename'`, `gender: column 'sex' (codes read as utkface: 0 = male, 1 = female)`); `skipped`
    names each breakdown that the table cannot support and why; `notes` are facts a reader of the
    report should know (unreadable gender predictions, label disagreements).
    """

    frame: pd.DataFrame
    rejects: pd.DataFrame
    sources: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    gender_codes: str | None = None   # the convention numeric gender codes in columns were read with, if any


def read_table(path: Path, sep: str | None = None) -> pd.DataFrame:
    """A predictions table from CSV/TSV/parquet, every CSV column read as text-or-number as pandas infers."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass the path of a CSV, TSV or parquet predictions table")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if sep is None:
        sep = "\t" if suffix in (".tsv", ".tab") else ","
    return pd.read_csv(path, sep=sep, low_memory=False)


def resolve_columns(columns, requested: dict[str, str | None]) -> dict[str, str | None]:
    """The table column for each field: the one the user named (must exist) or the first default found."""
    by_lower: dict[str, str] = {}
    for column in columns:
        by_lower.setdefault(str(column).strip().lower(), column)
    chosen: dict[str, str | None] = {}
    for name, candidates in DEFAULT_NAMES.items():
        wanted = requested.get(name)
        if wanted is not None:
            if wanted in columns:
                chosen[name] = wanted
            elif wanted.strip().lower() in by_lower:
                chosen[name] = by_lower[wanted.strip().lower()]
            else:
                flag = "--" + name.replace("_", "-") + "-col"
                raise ColumnError(f"column {wanted!r} ({flag}) is not in the table; its columns are {list(columns)}")
        else:
            chosen[name] = next((by_lower[c] for c in candidates if c in by_lower), None)
    _refuse_double_use(chosen, requested)
    return chosen


def _refuse_double_use(chosen: dict[str, str | None], requested: dict[str, str | None]) -> None:
    seen: dict[str, str] = {}
    for name, column in list(chosen.items()):
        if column is None:
            continue
        if column in seen:
            if requested.get(name) is None:      # a default guess collides with another field: drop the guess
                chosen[name] = None
                continue
            if requested.get(seen[column]) is None:
                chosen[seen[column]] = None
            else:
                raise ColumnError(f"column {column!r} is named for both {seen[column]} and {name}")
        seen[column] = name


@dataclass(frozen=True)
class FileLabels:
    """Labels read from UTKFace-style file names: per label, the raw field (or None) and why it is None."""

    values: dict[str, pd.Series]
    problems: dict[str, pd.Series]


def raw_utkface_fields(name) -> dict[str, str | None]:
    """`{age}_{gender}_{race}_{datetime}.jpg` -> the raw fields (codes as text); LabelError when malformed.

    The audit's lenient reading; the prepare stage's strict one (a missing field rejects the row) is
    datasets.utkface.parse_utkface_name. Both split the name with `name_fields`.

    Directories (`/` or `\\`) are ignored. The real dataset holds a few names without the race field
    (`39_1_20170116174525125.jpg.chip.jpg`): their race comes back as None (unknown), their age and
    gender stay usable.
    """
    if name is None or (isinstance(name, float) and np.isnan(name)) or str(name).strip() == "":
        raise LabelError("file name is missing")
    base = PureWindowsPath(str(name).strip()).name
    fields = name_fields(base.split(".", 1)[0])
    if len(fields) < 3 or not (fields[0].isascii() and fields[0].isdigit()):
        raise LabelError(f"file name {base!r} is not in UTKFace form age_gender_race_datetime.jpg")
    return {"age": fields[0], "gender": fields[1], "race": fields[2] if len(fields) >= 4 else None}


def labels_from_file_names(names: pd.Series) -> FileLabels:
    """The raw label fields of every row's file name; each distinct name is parsed once."""
    codes, uniques = pd.factorize(names, use_na_sentinel=True)
    values = {label: [] for label in LABEL_FIELDS}
    problems = {label: [] for label in LABEL_FIELDS}
    for name in uniques:
        try:
            fields = raw_utkface_fields(name)
        except LabelError as error:
            fields, problem = dict.fromkeys(LABEL_FIELDS), str(error)
        else:
            problem = None
        for label in LABEL_FIELDS:
            values[label].append(fields[label])
            problems[label].append(problem)
    def per_row(table: dict[str, list], fill) -> dict[str, pd.Series]:
        return {label: pd.Series(np.array(table[label] + [fill], dtype=object)[codes], index=names.index)
                for label in LABEL_FIELDS}

    return FileLabels(values=per_row(values, None), problems=per_row(problems, "file name is missing"))


def _normalise_series(values: pd.Series, normalise: Callable, what: str) -> tuple[pd.Series, pd.Series]:
    """(normalised value or None, reject reason or None) per row; each distinct value is judged once."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    results: list[object] = []
    reasons: list[object] = []
    for value in uniques:
        try:
            results.append(normalise(value))
            reasons.append(None)
        except LabelError as error:
            results.append(None)
            reasons.append(str(error))
    results.append(None)
    reasons.append(f"{what} is missing")
    result_array = np.array(results, dtype=object)
    reason_array = np.array(reasons, dtype=object)
    return (pd.Series(result_array[codes], index=values.index),
            pd.Series(reason_array[codes], index=values.index))


def describe_codes(codes: str) -> str:
    """`utkface: 0 = male, 1 = female`."""
    return f"{codes}: " + ", ".join(f"{code} = {word}" for code, word in GENDER_CODES[codes].items())


def holds_codes(values: pd.Series) -> bool:
    """Does any cell hold a numeric code rather than a word?"""
    return any(as_code(value) is not None for value in pd.unique(values.dropna()))


def gender_reader(codes: str | None, column: str) -> Callable[[object], str]:
    """Reads one cell of the gender column `column`: a word, or a numeric code in the convention `codes`.

    A code without a convention raises ColumnError (the whole table is refused, with the flag to give);
    a code the convention does not know, or an unknown word, raises LabelError (that row is rejected).
    """
    if codes is not None and codes not in GENDER_CODES:
        raise ColumnError(f"unknown --gender-codes {codes!r}; allowed: {', '.join(GENDER_CODES)}")

    def read(value) -> str:
        code = as_code(value)
        if code is None:
            return normalise_gender(value)
        if codes is None:
            raise ColumnError(
                f"column {column!r} holds numeric gender codes ({value!r}), and conventions disagree (UTKFace: "
                f"0 = male; IMDB-Wiki, deepface: 0 = female): name yours with --gender-codes "
                f"{'|'.join(GENDER_CODES)}, or write the genders as words")
        if code not in GENDER_CODES[codes]:
            raise LabelError(f"gender code {value!r} is not one of {describe_codes(codes)}")
        return GENDER_CODES[codes][code]

    return read


def _numeric(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    return numbers.where(np.isfinite(numbers))


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype(str).str.strip().eq("")


def _entirely_missing(values: pd.Series) -> bool:
    return bool(_blank(values).all())


def normalise_predictions(
    raw: pd.DataFrame,
    requested: dict[str, str | None] | None = None,
    *,
    dataset: str = "table",
    experiment: str = "audit",
    min_age: int | None = None,
    max_age: int | None = None,
    gender_codes: str | None = None,
) -> Normalised:
    """The predictions contract from any table; see the module docstring for the rules.

    `requested` maps fields (keys of DEFAULT_NAMES) to column names the user gave. `min_age`/`max_age`
    keep only rows with ages in that range (the rest are rejected with the reason); none by default,
    since real tables hold ages above 100, but a true age over PLAUSIBLE_MAX_AGE is always rejected.
    `gender_codes` (a key of GENDER_CODES) is how numeric gender codes in the gender and gender
    prediction columns read; without it such codes are refused.
    """
    columns = resolve_columns(list(raw.columns), requested or {})
    if columns["age_pred"] is None:
        raise ColumnError(
            f"no age prediction column found (tried {', '.join(DEFAULT_NAMES['age_pred'])}); "
            f"name it with --pred-col; the table's columns are {list(raw.columns)}")
    table = raw.reset_index(drop=True)
    sources: dict[str, str] = {}
    skipped: dict[str, str] = {}
    notes: list[str] = []
    reasons = pd.Series([[] for _ in range(len(table))], index=table.index, dtype=object)
    file_labels = labels_from_file_names(table[columns["filename"]]) if columns["filename"] else None

    out = pd.DataFrame(index=table.index)
    readers = {"age": normalise_age, "gender": gender_reader(gender_codes, columns["gender"]), "race": normalise_race}
    codes_read = False
    for label, read in readers.items():
        values, problems, source = _label_values(table, columns, label, file_labels)
        if values is None:
            if label == "age":
                raise ColumnError(
                    f"no true age: no age column (tried {', '.join(DEFAULT_NAMES['age'])}; name one with "
                    f"--age-col) and no UTKFace file-name column (--filename-col); columns: {list(raw.columns)}")
            skipped[label] = source
            out[label] = None
            continue
        from_names = problems is not None        # only labels read from file names carry parse problems
        if label == "gender" and not from_names and holds_codes(values):
            codes_read = True
            source += f" (codes read as {describe_codes(gender_codes)})" if gender_codes else ""
        sources[label] = source
        if label == "gender" and from_names:
            read = normalise_gender                 # file names are UTKFace's: 0 = male, 1 = female
        normalised, why = _normalise_series(values, read, label)
        out[label] = normalised
        if problems is not None:
            why = problems.combine_first(why)
        if label in OPTIONAL_LABELS:
            unknown = _blank(values) & (problems.isna() if problems is not None else True)
            why = why.where(~unknown)
            if unknown.any():
                notes.append(f"{int(unknown.sum()):,} rows have no {label} ({source}): kept, counted everywhere "
                             f"except the {label} breakdowns")
        _collect(reasons, why)

    out["age_pred"] = _numeric(table[columns["age_pred"]])
    sources["age_pred"] = f"column {columns['age_pred']!r}"
    _collect(reasons, _reason_where(out["age_pred"].isna(), table[columns["age_pred"]], "age prediction"))
    out["age_pred_argmax"] = _optional_numeric(table, columns["age_pred_argmax"], sources, notes, what="age_pred_argmax")
    out["gender_prob_female"] = _optional_numeric(table, columns["gender_prob_female"], sources, notes,
                                                  what="gender_prob_female")
    out["gender_pred"] = _gender_predictions(table, columns, out["gender_prob_female"], sources, notes=notes,
                                             codes=gender_codes)
    codes_read |= columns["gender_pred"] is not None and holds_codes(table[columns["gender_pred"]])
    if file_labels is not None:
        notes.extend(_disagreements(table, columns, file_labels, readers))

    out["id"] = _text_column(table, columns["id"], columns["filename"])
    out["dataset"] = table[columns["dataset"]].astype(str) if columns["dataset"] else dataset
    out["split"] = table[columns["split"]].astype(str).str.strip().str.lower() if columns["split"] else "all"
    out["experiment"] = table[columns["experiment"]].astype(str) if columns["experiment"] else experiment
    _collect(reasons, _age_range_reasons(out["age"], min_age, max_age))

    rejected = reasons.map(bool)
    rejects = table.loc[rejected].copy()
    rejects.insert(0, "reason", reasons[rejected].map("; ".join))
    rejects.insert(0, "row", rejects.index.astype("int64"))
    out[BAND_COLUMN] = table[BAND_COLUMN] if BAND_COLUMN in table.columns else None
    out[CLUSTER_COLUMN] = table[columns["cluster"]].astype(object) if columns["cluster"] else None
    if columns["cluster"]:
        sources["cluster"] = f"column {columns['cluster']!r} (the bootstrap draws clusters, not faces)"
    frame = out.loc[~rejected, PREDICTION_COLUMNS + [BAND_COLUMN, CLUSTER_COLUMN]].reset_index(drop=True)
    frame["age"] = frame["age"].astype("int64")
    return Normalised(frame=frame, rejects=rejects.reset_index(drop=True), sources=sources, skipped=skipped,
                      notes=notes, gender_codes=gender_codes if codes_read else None)


def _label_values(table, columns, label, file_labels) -> tuple[pd.Series | None, pd.Series | None, str]:
    """A label's raw values, the file-name problems behind them (if read from names), and their source.

    (None, None, why) when the table has no such label.
    """
    column = columns[label]
    if column is not None and not _entirely_missing(table[column]):
        return table[column], None, f"column {column!r}"
    if file_labels is not None:
        empty = f" (column {column!r} is empty)" if column is not None else ""
        return (file_labels.values[label], file_labels.problems[label],
                f"file names in {columns['filename']!r}{empty}")
    if column is not None:
        return None, None, f"column {column!r} is empty and there is no file-name column to read it from"
    return None, None, (f"no {label} column (tried {', '.join(DEFAULT_NAMES[label])}; name one with "
                        f"--{label}-col) and no file-name column")


def _collect(reasons: pd.Series, why: pd.Series) -> None:
    for index in why.index[why.notna()]:
        if why[index] not in reasons[index]:
            reasons[index].append(why[index])


def _reason_where(bad: pd.Series, raw_values: pd.Series, what: str) -> pd.Series:
    text = raw_values.where(bad).map(lambda v: f"{what} is missing" if pd.isna(v) or str(v).strip() == ""
                                     else f"{what} {v!r} is not a number")
    return text.where(bad)


def _optional_numeric(table, column, sources, notes, *, what) -> pd.Series:
    if column is None:
        return pd.Series(np.nan, index=table.index)
    numbers = _numeric(table[column])
    sources[what] = f"column {column!r}"
    unreadable = int((numbers.isna() & table[column].notna()).sum())
    if unreadable:
        notes.append(f"{unreadable} values of {column!r} ({what}) are not numbers: kept as missing")
    return numbers


def _gender_predictions(table, columns, prob_female, sources, *, notes, codes: str | None) -> pd.Series:
    """`male`/`female` per row from the prediction column (words, or codes in the convention `codes`),
    else from p(female) >= 0.5; None if neither."""
    from_prob = pd.Series(np.where(prob_female >= 0.5, "female", "male"), index=table.index).where(prob_female.notna())
    if columns["gender_pred"] is None:
        if prob_female.notna().any():
            sources["gender_pred"] = "p(female) >= 0.5"
        return from_prob.astype(object).where(from_prob.notna(), None)
    values = table[columns["gender_pred"]]
    predicted, why = _normalise_series(values, gender_reader(codes, columns["gender_pred"]), "gender prediction")
    sources["gender_pred"] = f"column {columns['gender_pred']!r}" + (
        f" (codes read as {describe_codes(codes)})" if codes and holds_codes(values) else "")
    unreadable = int((why.notna() & table[columns["gender_pred"]].notna()).sum())
    if unreadable:
        notes.append(f"{unreadable} gender predictions in {columns['gender_pred']!r} are unreadable: "
                     "those rows count for age only")
    combined = predicted.where(predicted.notna(), from_prob)
    return combined.astype(object).where(combined.notna(), None)


def _disagreements(table, columns, file_labels: FileLabels, readers: dict[str, Callable]) -> list[str]:
    """Notes where a label column and the file names disagree (both readable): a sign of a shifted table,
    or of gender codes read in the wrong convention."""
    notes = []
    agreed = []
    for label, read in readers.items():
        column = columns[label]
        if column is None or _entirely_missing(table[column]):
            continue
        from_column, bad_column = _normalise_series(table[column], read, label)
        from_file, bad_file = _normalise_series(file_labels.values[label],
                                                normalise_gender if label == "gender" else read, label)
        both = bad_column.isna() & bad_file.isna()
        differ = int((from_column[both] != from_file[both]).sum())
        if differ:
            notes.append(f"{differ} rows: {label} in column {column!r} differs from the file name "
                         f"(the column is used)")
        else:
            agreed.append(label)
    if agreed:
        notes.append(f"{', '.join(agreed)} in the label columns agree with the file names on every row "
                     "where both are readable")
    return notes


def _text_column(table, column, fallback) -> pd.Series:
    if column is not None:
        return table[column].astype(str)
    if fallback is not None:
        return table[fallback].astype(str)
    return pd.Series(table.index.astype(str), index=table.index)


def _age_range_reasons(ages: pd.Series, min_age: int | None, max_age: int | None) -> pd.Series:
    numbers = pd.to_numeric(ages, errors="coerce")
    reason = pd.Series(None, index=ages.index, dtype=object)
    if min_age is not None:
        low = numbers < min_age
        reason[low] = numbers[low].map(lambda a: f"age {int(a)} below --min-age {min_age}")
    if max_age is not None:
        high = numbers > max_age
        reason[high] = numbers[high].map(lambda a: f"age {int(a)} above --max-age {max_age}")
    implausible = (numbers > PLAUSIBLE_MAX_AGE) & reason.isna()
    reason[implausible] = numbers[implausible].map(
        lambda a: f"age {int(a)} is not a plausible human age (over {PLAUSIBLE_MAX_AGE}); fix the label")
    return reason
