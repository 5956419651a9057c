"""The audit CLI's skin-colour part: where anyone's predictions table carries `skin_lightness` and/or
`skin_hue` (and, optionally, the photo-quality columns of the measure stage's contract), the breakdowns
by skin band × gender, the within-group slopes and the quality-adjusted gaps, as the study makes them
(evaluation/skin_analysis.py), written to --out/skin/ and as a report section. Bands are the table's own
quintiles, beside the paper's fixed cut-offs (L* 60, h* 55). Without the columns: one line, and the
audit goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from stages.lib.evaluation.intervals import Bootstrap
from stages.lib.evaluation.predictions import Normalised
from stages.lib.evaluation.skin import QUALITY_COLUMNS, SKIN_COLUMNS, SkinBands
from stages.lib.evaluation.skin_analysis import analyse
from stages.lib.reporting.markdown import Markdown, gaps_display, groups_display
from stages.lib.reporting.skin_section import CAVEAT, are_minors, gap_sentence, held_before, slope_sentence

ABSENT = "no skin_lightness / skin_hue column: no skin-colour breakdown (add them to break error down by skin colour)"
SHOWN = ("lightness_quintile*gender", "hue_quintile*gender", "lightness_paper*gender", "hue_paper*gender")


def measured_columns(raw: pd.DataFrame, normalised: Normalised) -> pd.DataFrame:
    """The table's skin and quality columns (matched case-insensitively), row for row with
    `normalised.frame` (the rejected rows taken out as normalise_predictions took them out)."""
    names = {str(c).lower(): c for c in raw.columns}
    wanted = {c: names[c] for c in (*SKIN_COLUMNS, *QUALITY_COLUMNS) if c in names}
    kept = raw.reset_index(drop=True).drop(index=normalised.rejects["row"].astype(int)).reset_index(drop=True)
    return pd.DataFrame({c: pd.to_numeric(kept[source], errors="coerce") for c, source in wanted.items()})


def audit_skin(raw: pd.DataFrame, normalised: Normalised, kept: pd.DataFrame, out: Path, *, edges: Sequence[int],
               bootstrap: Bootstrap, min_group_size: int) -> str:
    """The skin section's markdown for the audit report (empty where the table has no skin column, after
    printing one line saying so); writes out/skin/*.csv. `kept`: the evaluated rows of
    `normalised.frame` (their index is its)."""
    measured = measured_columns(raw, normalised)
    if not any(c in measured for c in SKIN_COLUMNS):
        print(f"audit: {ABSENT}")
        return ""
    faces = kept.join(measured.loc[kept.index])
    bands = SkinBands.from_faces(faces)
    analysis = analyse(faces, bands, bootstrap, min_group_size, edges=edges)
    analysis.write(Path(out) / "skin")
    md = Markdown(out)
    md.heading("Skin colour", 2)
    md.paragraph(f"Columns read: {', '.join(measured.columns)}; {int(faces[list(set(SKIN_COLUMNS) & set(faces))].notna().any(axis=1).sum()):,} "
                 "of the evaluated faces have a skin measurement (the rest are in no skin band). Tables in `skin/`.")
    md.table(bands.table(), "Skin bands: this table's quintiles, beside the fixed cut-offs of Thong et al. (2023)")
    if analysis.breakdown is not None:
        groups, verdicts = analysis.breakdown.groups, analysis.breakdown.significance
        for attribute in (a for a in SHOWN if (groups["attribute"] == a).any()):
            md.table(groups_display(groups, attribute, bootstrap.confidence, verdicts), attribute)
        md.table(gaps_display(analysis.breakdown.gaps, bootstrap.confidence), "Worst − best skin band (× gender)")
    slopes, who = analysis.slopes, {"model": "this table", "dataset": "its faces", "minors": are_minors(faces["age"])}
    if not slopes.empty:
        lines = [slope_sentence(rows[rows["significant"]].assign(**who), len(rows))
                 for _, rows in slopes[~slopes["small"]].groupby(["outcome", "measure"], sort=False)
                 if rows["significant"].any()]
        md.bullets(lines or ["Within no race × gender group does error move with skin L* or h* (Holm)."])
    if not analysis.adjusted_gaps.empty:
        gaps = analysis.adjusted_gaps.assign(**who)
        md.bullets(gap_sentence(row) for _, row in held_before(gaps).iterrows())
        md.paragraph(CAVEAT)
    return "\n\n" + md.text()
