"""Every Python code block of README.md and docs/ runs, offline, as written.

Blocks of one page share their variables (``memory=True``), like cells of a
notebook. They run in a temporary directory with the embedding cache there too, so
nothing is written to the home directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

mktestdocs = pytest.importorskip("mktestdocs")

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_docs_page_is_collected():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/getting-started.md"} <= names
    assert len(names) >= 10


@pytest.mark.slow  # most pages embed real text with the local model
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMBEDTASKS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pytest.importorskip("matplotlib").use("Agg")
    mktestdocs.check_md_file(fpath=page, memory=True)
