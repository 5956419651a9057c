"""The user documentation keeps its promises: a README a newcomer reads in five minutes, the reference in
`docs/`, no internal history, and every `python -m stages...` command written there accepted, as
written, by that command's own parser."""

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *PAGES]
COMMAND = re.compile(r"python -m stages\.(\w+)((?:[^`\n#]|\\\n)*)")


class Parsed(Exception):
    """Raised by the patched parser once the arguments are accepted, so that no stage runs."""


def fenced_lines(text: str) -> list[str]:
    """The lines of the document's code blocks, `\\` continuations joined."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]


def inline_spans(text: str) -> list[str]:
    without_blocks = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"`([^`\n]+)`", without_blocks)


def documented_commands(text: str) -> list[tuple[str, list[str]]]:
    """Every `python -m stages.<name> args` in a document's code blocks and inline code."""
    found = []
    for line in fenced_lines(text) + inline_spans(text):
        for match in COMMAND.finditer(line):
            arguments = match.group(2).split(" # ")[0].split(";")[0].split("&&")[0]
            found.append((match.group(1), shlex.split(arguments)))
    return found


def parse_as_the_stage_does(stage: str, arguments: list[str], monkeypatch) -> None:
    """Run the stage's `main(arguments)` up to its parser: the parse either fails (SystemExit) or is
    stopped right after it succeeds. A stage without a parser takes no arguments."""
    module = importlib.import_module(f"stages.{stage}")
    if "ArgumentParser" not in Path(module.__file__).read_text():
        assert arguments == [], f"stages.{stage} takes no arguments, the documentation gives {arguments}"
        return
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(parser, args=None, namespace=None):
        original(parser, args, namespace)
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    with pytest.raises(Parsed):
        module.main(arguments)


def all_commands() -> list[tuple[str, str, list[str]]]:
    return [(path.name, stage, arguments) for path in DOCUMENTS
            for stage, arguments in documented_commands(path.read_text())]


def test_the_readme_is_short_and_starts_with_the_quick_start():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md is {len(lines)} lines: move reference material into docs/"
    quick_start = next(number for number, line in enumerate(lines) if line.startswith("## Quick start"))
    assert quick_start < 15
    assert "dvc exp run -S profile=demo" in "\n".join(lines[:40])
    assert "python -m pytest" in "\n".join(lines[:40])


def test_the_readme_links_every_reference_page_and_only_pages_that_exist():
    text = README.read_text()
    linked = set(re.findall(r"\((docs/[\w-]+\.md)\)", text))
    assert linked == {f"docs/{page.name}" for page in PAGES}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_user_documentation_never_refers_to_issues_or_sessions(document):
    text = document.read_text()
    assert not re.search(r"\bissues? ?#?\d+|\bsessions?\b|\bthe issue\b", text, flags=re.I)


def test_the_documents_show_commands_to_check():
    stages = {stage for _, stage, _ in all_commands()}
    assert {"predict", "audit", "download"} <= stages


@pytest.mark.parametrize(("document", "stage", "arguments"), all_commands(),
                         ids=lambda value: value if isinstance(value, str) else " ".join(value))
def test_every_documented_command_is_accepted_by_its_parser(document, stage, arguments, monkeypatch):
    synopsis = [word for word in arguments if word == "..." or set(word) & set("[]|<>")]
    assert not synopsis, f"{document}: write a command that runs as written, not a synopsis: {synopsis}"
    parse_as_the_stage_does(stage, arguments, monkeypatch)


def test_a_wrong_flag_in_a_document_is_caught(monkeypatch):
    (stage, arguments), = documented_commands("run `python -m stages.audit table.csv --no-such-flag`")
    with pytest.raises(SystemExit):
        parse_as_the_stage_does(stage, arguments, monkeypatch)
