"""Every "adjusted" in a rendered report sits beside an adjusted interval or an adjusted p-value: a word
that promises an adjustment always shows the adjusted number it promises (the markdown is scanned)."""

import re

import yaml

ADJUSTED = re.compile(r"\badjusted\b", re.IGNORECASE)
# an adjusted p-value or an adjusted interval, written out
ADJUSTED_VALUE = re.compile(r"adjusted p (< )?\d|adjusted [\d.]+% interval \[|adjusted p-values? [^.]*\d", re.IGNORECASE)
VALUE_CELL = re.compile(r"^(|—|not computed|.*\d.*)$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*])")


def unsupported_adjusted(text: str) -> list[str]:
    """The sentences (or table cells) of a markdown text that say "adjusted" without an adjusted value
    beside them; a table column headed "adjusted" must hold values."""
    problems, header = [], None
    for line in text.splitlines():
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


def test_every_adjusted_in_the_rendered_report_sits_beside_its_adjusted_number(tmp_path, monkeypatch):
    from stages import evaluate as evaluate_stage
    from stages import report as report_stage
    from tests.reporting.test_report import write_params, write_predictions

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, bootstrap=30)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["profile"] = "full"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    for name, noise, seed in (("published", 9, 0), ("retrained", 5, 1), ("oversample_x2", 4, 2)):
        write_predictions(tmp_path, name, noise=noise, seed=seed)
        evaluate_stage.main([name])
    report_stage.main([])
    text = (tmp_path / "reports" / "report.md").read_text()
    assert ADJUSTED.search(text)
    assert unsupported_adjusted(text) == []
