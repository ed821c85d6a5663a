"""docs/architecture.md stays true, and the house keeps its size rules."""

from __future__ import annotations

import ast
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


def _code_lines(lines: list[str], node: ast.AST) -> int:
    """Lines of code in ``node``: no blank, comment-only or docstring lines."""
    docs: set[int] = set()
    for inner in ast.walk(node):
        body = getattr(inner, "body", None)
        if (
            isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    span = range(node.lineno, node.end_lineno + 1)
    code = [lines[i - 1].strip() for i in span if i not in docs]
    return sum(1 for line in code if line and not line.startswith("#"))


def test_no_file_class_or_function_outgrows_the_house():
    too_big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        name = path.relative_to(PACKAGE).as_posix()
        if len(lines) > 700:
            too_big.append(f"{name}: {len(lines)} lines (at most 700)")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and _code_lines(lines, node) > 600:
                too_big.append(f"{name}: class {node.name} (at most 600 lines)")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if _code_lines(lines, node) > 100:
                    too_big.append(f"{name}: {node.name} (at most 100 lines)")
    assert not too_big, "; ".join(too_big)
