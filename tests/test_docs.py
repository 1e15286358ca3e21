"""The Markdown a user reads renders as written (code blocks open and close where the source says,
table rows keep their cells, links lead to files and sections), and the commands and deployment
parameters it shows exist, and its Python parses and imports what exists."""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from flows.cli import build_parser
from flows.parameters import FINETUNE, INGEST, PREDICT, TILE

ROOT = Path(__file__).resolve().parents[1]
DOCS = subprocess.run(
    ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
).stdout.split()
FENCE = re.compile(r"^(\s*)(```|~~~)")


def _tokens(path: Path) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(path.read_text(encoding="utf-8"))


def _inline(tokens: list[Token]) -> list[Token]:
    return [child for t in tokens if t.type == "inline" for child in t.children or []]


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS)
def test_code_blocks_render_as_written(doc: str) -> None:
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    fences = [t for t in _tokens(ROOT / doc) if t.type == "fence"]
    for fence in fences:
        assert fence.map is not None
        first, last = fence.map[0], fence.map[1] - 1
        opening, closing = FENCE.match(lines[first]), FENCE.match(lines[last])
        assert closing and last > first, (
            f"{doc}:{first + 1}: the code block is not closed where the source closes it (a line "
            "less indented than its fence ends the list item around it)"
        )
        assert opening and len(opening[1]) == len(closing[1]), (
            f"{doc}:{last + 1}: the closing fence is indented otherwise than the opening one"
        )
    assert 2 * len(fences) == sum(bool(FENCE.match(line)) for line in lines), (
        f"{doc}: fence lines that render as no code block"
    )


@pytest.mark.parametrize("doc", DOCS)
def test_table_rows_have_the_header_cells(doc: str) -> None:
    """A `|` left unescaped in a cell (`--adapter lora|full`) adds a cell that GitHub drops."""
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    for table in (t for t in _tokens(ROOT / doc) if t.type == "table_open"):
        assert table.map is not None
        rows = lines[table.map[0] : table.map[1]]
        cells = [len(re.split(r"(?<!\\)\|", row.strip().strip("|"))) for row in rows]
        assert len(set(cells)) == 1, f"{doc}:{table.map[0] + 1}: rows of {cells} cells"


@pytest.mark.parametrize("doc", DOCS)
def test_links_lead_to_files_and_sections(doc: str) -> None:
    tokens = _tokens(ROOT / doc)
    titles = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    anchors = {_anchor(title) for title in titles}
    for link in _inline(tokens):
        target = link.attrGet("href") or link.attrGet("src")
        if link.type not in ("link_open", "image") or not isinstance(target, str):
            continue
        if re.match(r"^[a-z]+:", target):
            continue  # another site
        path, _, section = target.partition("#")
        if path:
            assert (ROOT / doc).parent.joinpath(path).exists(), f"{doc}: {target} does not exist"
        elif section:
            assert section in anchors, f"{doc}: no section #{section}"


def _code(doc: str) -> list[str]:
    """The code a doc shows: its code blocks and inline code, continuation lines joined."""
    tokens = _tokens(ROOT / doc)
    spans = [t.content for t in tokens if t.type == "fence"]
    spans += [t.content for t in _inline(tokens) if t.type == "code_inline"]
    return [span.replace("\\\n", " ") for span in spans]


@pytest.mark.parametrize("doc", DOCS)
def test_commands_shown_take_the_options_shown(doc: str) -> None:
    commands = next(
        a.choices for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    for code in _code(doc):
        for command, rest in re.findall(r"convlora-geo\s+([a-z][a-z-]*)([^\n`|;&]*)", code):
            assert command in commands, f"{doc}: no command convlora-geo {command}"
            options = {o for action in commands[command]._actions for o in action.option_strings}
            for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
                assert option in options, f"{doc}: convlora-geo {command} has no {option}"


@pytest.mark.parametrize("doc", DOCS)
def test_deployment_parameters_shown_exist(doc: str) -> None:
    flows = {"tile": TILE, "finetune": FINETUNE, "predict": PREDICT, "ingest": INGEST}
    every = {name for options in flows.values() for name in options.names}
    for code in _code(doc):
        runs = re.findall(r"prefect deployment run\s+([a-z-]+)/[a-z-]+([^\n]*)", code)
        for flow, rest in runs:
            for name in set(re.findall(r"-p\s+'?([a-z_]+)=", rest)) - {"key"}:  # -p key=value
                assert name in flows[flow].names, f"{doc}: the {flow} flow has no {name}"
        if not runs:
            for name in re.findall(r"(?:^|\s)-p\s+'?([a-z_]+)=", code):
                assert name in every, f"{doc}: no flow has a parameter {name}"


@pytest.mark.parametrize("doc", DOCS)
def test_python_shown_parses_and_imports_what_exists(doc: str) -> None:
    blocks = [t for t in _tokens(ROOT / doc) if t.type == "fence" and t.info.strip() == "python"]
    for block in blocks:
        tree = ast.parse(textwrap.dedent(block.content), f"{doc}:{(block.map or [0])[0] + 1}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{doc}: {node.module} has no {alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
