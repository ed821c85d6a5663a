"""docs/architecture.md stays true, and the house keeps its size rules."""

from __future__ import annotations

import re
from pathlib import Path

import embedtasks

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(embedtasks.__file__).resolve().parent
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _subpackages() -> set[str]:
    return {
        p.parent.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("__init__.py")
        if p.parent != PACKAGE
    }


def test_architecture_names_every_subpackage():
    missing = {pkg for pkg in _subpackages() if f"`{pkg.split('/')[-1]}/`" not in DOC}
    assert not missing, f"docs/architecture.md does not name {sorted(missing)}"


def test_architecture_folders_and_modules_exist():
    for folder in re.findall(r"\*\*`([\w]+)/`\*\*", DOC):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    for module in re.findall(r"`(\w+\.py)`", DOC):
        assert (PACKAGE / module).is_file(), module
    for folder in re.findall(r"`(tests/\w+)/`", DOC):
        assert (ROOT / folder).is_dir(), folder


def test_top_level_stays_small():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 15, modules


def test_the_cache_folder_owner_names_every_store():
    from embedtasks import _cachedir

    doc = _cachedir.__doc__ or ""
    for name in (
        _cachedir.EMBEDDINGS_FILENAME,
        _cachedir.PACING_FILENAME,
        _cachedir.CLUSTER_DIRNAME,
        _cachedir.NUMBA_DIRNAME,
        _cachedir.DEMO_CORPUS_PREFIX,
    ):
        assert name in doc, name
