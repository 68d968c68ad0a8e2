"""Every code block of the README and the docs runs (see :mod:`tests.docs.harness` for
how each kind of block is run), and the README's set-up commands are the ones CI runs."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.cli.helpers import perdure

from .harness import KNOWN, ROOT, blocks, pages, run_page

PAGES = pages()
MARKERS = {None, "parse", "skip", "setup"}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_code_blocks_of_the_page_run(page, tmp_path):
    run_page(page, tmp_path)


def test_every_block_is_run_checked_or_marked_as_output():
    for page in PAGES:
        for block in blocks(page):
            assert block.lang in KNOWN, f"{block.where}: a ```{block.lang or '(no language)'} block is not run"
            assert block.marker in MARKERS, f"{block.where}: unknown marker {block.marker!r}"


def test_the_readme_set_up_commands_are_what_ci_runs(tmp_path):
    setup = [b for b in blocks(ROOT / "README.md") if b.marker == "setup"]
    assert [b.text.strip() for b in setup] == [
        'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && .venv/bin/perdure demo',
        ".venv/bin/python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert "python3 -m venv .venv" in ci_lines
    assert any(shlex.split(line)[-1] == ".[dev]" and "install" in line for line in ci_lines)
    assert ci_lines[-1] == setup[1].text.strip()  # CI ends with exactly the README's test command
    demo = perdure("demo", cwd=tmp_path)
    assert "order-1001: COMPLETED" in demo.out
    assert list(tmp_path.iterdir()) == []  # the demo cleans up its temporary store


def test_the_readme_links_to_pages_that_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)\)", text)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).is_file(), link
