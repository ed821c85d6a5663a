"""Every notebook runs top to bottom, offline, and is stored without outputs.

Each notebook is a reviewed jupytext ``.py`` (percent format) paired with an
output-free ``.ipynb``. The notebooks share one embedding cache in a temporary
directory, so the corpus is embedded once for all of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
IDS = [p.stem for p in SOURCES]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("notebook-cache")


def test_one_notebook_per_task_and_a_tour():
    assert IDS == [
        "00_tour",
        "01_search",
        "02_recommendations",
        "03_clustering",
        "04_outliers",
        "05_diversity",
        "06_classification",
    ]


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_notebook_is_paired_and_stored_without_outputs(source):
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"run: jupytext --sync {source.name}"
    stored = nbformat.read(paired, as_version=4)
    for cell in stored.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, paired.name
    reviewed = jupytext.read(source)
    assert [c.source for c in stored.cells] == [c.source for c in reviewed.cells], (
        f"{paired.name} is out of sync with {source.name}: run jupytext --sync"
    )


@pytest.mark.local_model
@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_notebook_runs_top_to_bottom(source, shared_cache, tmp_path, monkeypatch):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("EMBEDTASKS_CACHE_DIR", str(shared_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    notebook = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if source.stem not in ("00_tour",):  # every task notebook draws something
        assert any("image/png" in o.get("data", {}) for o in outputs), source.name
