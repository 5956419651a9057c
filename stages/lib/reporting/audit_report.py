"""The report of `python -m stages.audit` (report.md beside its tables): what was read and how, the
settings, the study's evaluation sections, the optional correction, and what each file holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pandas as pd

from stages.lib.core.labels import band_labels
from stages.lib.evaluation.groups import Evaluation
from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.predictions import Normalised, describe_codes
from stages.lib.reporting.markdown import Markdown, correction_section, evaluation_sections

FILES = {
    "groups.csv": "one row per group (the groups contract)",
    "gaps.csv": ("worst vs best group: raw interval, interval after Bonferroni adjustment over the pairs, "
                 "omnibus test of all groups equal"),
    "significance.csv": "each group's raw interval against the reference, p-value raw and after adjustment",
    "metrics.json": "overall figures",
    "rejects.csv": "rows not evaluated, with the reason",
    "band_changes.csv": "with --reference: each age band's paired change against it (Holm across bands)",
    "tables/": "the study's tables as CSV",
    "plots/": "DVC plot data",
    "figures/": "the figures above",
}


@dataclass(frozen=True)
class AuditSettings:
    edges: tuple[int, ...]
    bootstrap: Bootstrap
    min_group_size: int
    source: str   # where the defaults came from


@dataclass(frozen=True)
class AuditedTable:
    """The table an audit read, and how: what the report states about its input."""

    path: Path
    title: str
    rows_read: int
    normalised: Normalised
    kept: pd.DataFrame                # the rows evaluated (the requested split)
    requested_codes: str | None       # --gender-codes as given


def gender_codes_line(normalised: Normalised, requested: str | None) -> str:
    """Which convention numeric gender codes were read with, said in the report."""
    if normalised.gender_codes:
        return f"numeric gender codes read as {describe_codes(normalised.gender_codes)} (--gender-codes)"
    if requested:
        return f"--gender-codes {requested} given, but no gender column holds numeric codes: read as words"
    return "gender read as words (no numeric codes)"


def audit_report(table: AuditedTable, evaluation: Evaluation, settings: AuditSettings, *, out: Path,
                 figures: Mapping[str, Path], correction: tuple[pd.DataFrame, str] | None) -> str:
    """report.md's text; figure links relative to `out`."""
    md = Markdown(out)
    md.heading(f"Audit of {table.title}", 1)
    normalised, kept = table.normalised, table.kept
    md.paragraph(f"Predictions read from `{table.path}`: {table.rows_read:,} rows; **{len(kept):,} evaluated**, "
                 f"{len(normalised.rejects):,} rejected (see `rejects.csv`).")
    _input_section(md, table)
    _settings_section(md, table, settings)
    evaluation_sections(md, evaluation, figures, settings.bootstrap.confidence, min_group_size=settings.min_group_size)
    if correction is not None:
        correction_section(md, correction[0], correction[1], settings.bootstrap.confidence)
    md.heading("Files", 2)
    md.table(pd.DataFrame({"file": list(FILES), "what": list(FILES.values())}))
    return md.text()


def _input_section(md: Markdown, table: AuditedTable) -> None:
    normalised = table.normalised
    md.heading("Input", 2)
    md.bullets([f"{field}: {source}" for field, source in normalised.sources.items()])
    if normalised.skipped:
        md.paragraph("Breakdowns skipped:")
        md.bullets([f"**{label}**: {why}" for label, why in normalised.skipped.items()])
    if normalised.notes:
        md.paragraph("Notes:")
        md.bullets(normalised.notes)
    if not normalised.rejects.empty:
        reasons = normalised.rejects["reason"].value_counts().rename_axis("reason").reset_index(name="rows")
        md.table(reasons.head(15).astype(str), "rejected rows by reason (first 15 reasons)")
    if len(table.kept) < len(normalised.frame):
        md.paragraph(f"{len(normalised.frame) - len(table.kept):,} readable rows outside the requested split were "
                     "not evaluated.")


def _settings_section(md: Markdown, table: AuditedTable, settings: AuditSettings) -> None:
    md.paragraph("Settings:")
    md.bullets([
        f"age bands: {', '.join(band_labels(settings.edges))}",
        f"{settings.bootstrap.resamples:,} bootstrap resamples, {settings.bootstrap.confidence:.0%} intervals, "
        f"seed {settings.bootstrap.seed}; groups under {settings.min_group_size} faces flagged small "
        f"(settings from {settings.source} and flags)",
        gender_codes_line(table.normalised, table.requested_codes),
    ])
    below = int((table.kept["age"] < settings.edges[0]).sum())
    if below:
        md.paragraph(f"{below:,} faces are younger than the first band edge ({settings.edges[0]}): in every "
                     "figure except the age-band breakdowns.")
