"""Every "adjusted" in a rendered report sits beside an adjusted interval or an adjusted p-value: a word
that promises an adjustment always shows the adjusted number it promises (the markdown is scanned; the
whole rendered report is scanned in test_findings.py, which renders one already)."""

import re

ADJUSTED = re.compile(r"\badjusted\b", re.IGNORECASE)
# an adjusted p-value or an adjusted interval, written out
ADJUSTED_VALUE = re.compile(r"adjusted p (< )?\d|adjusted [\d.]+% interval \[|adjusted p-values? [^.]*\d", re.IGNORECASE)
VALUE_CELL = re.compile(r"^(|—|not computed|.*\d.*)$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*])")


FIGURE = re.compile(r"^!\[(.*)\]\(.*\)$")


def unsupported_adjusted(text: str) -> list[str]:
    """The sentences (or table cells) of a markdown text that say "adjusted" without an adjusted value
    beside them; a table column headed "adjusted" must hold values. A figure's link and caption are
    left out: the figure draws the adjusted intervals its caption names."""
    problems, header, caption = [], None, None
    for line in text.splitlines():
        figure = FIGURE.match(line)
        if figure or (caption and line == f"*{caption}*"):
            caption = figure.group(1) if figure else None
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if set(line) <= set("|-: "):
                continue
            if header is None:
                header = cells
                continue
            for title, cell in zip(header, cells):
                if ADJUSTED.search(title) and not VALUE_CELL.match(cell):
                    problems.append(f"column {title!r}: {cell!r}")
                elif ADJUSTED.search(cell) and not ADJUSTED_VALUE.search(cell):
                    problems.append(f"cell: {cell!r}")
            continue
        header = None
        problems += [s for s in SENTENCE_END.split(line) if ADJUSTED.search(s) and not ADJUSTED_VALUE.search(s)]
    return problems


def test_the_scan_catches_an_adjusted_word_without_its_number():
    assert unsupported_adjusted("A gap of +3.2 [+1.0, +5.0] years (adjusted for multiplicity).") != []
    assert unsupported_adjusted("A gap of +3.2 [+1.0, +5.0] years (raw; adjusted 99.2% interval [+0.4, +6.0]).") == []
    assert unsupported_adjusted("Two bands improve (adjusted p 0.004). Nothing else is adjusted.") == [
        "Nothing else is adjusted."]
    table = "| a | p (adjusted) |\n|---|---|\n| x | 0.01 |\n| y | later |"
    assert unsupported_adjusted(table) == ["column 'p (adjusted)': 'later'"]
    figure = "![Whiskers: adjusted intervals.](f.png)\n\n*Whiskers: adjusted intervals.*\n\nAll adjusted."
    assert unsupported_adjusted(figure) == ["All adjusted."]

