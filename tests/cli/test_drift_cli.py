"""`embedtasks drift REFERENCE NEW` and `embedtasks report NEW --reference REF`.

The loopback server gives each text a fixed random vector, so copies of a text are
the only near neighbours: the new file repeats three texts absent from the
reference ten times each, a new region no reference row is near.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from embedtasks.cli import main

NOVEL = ["the rocket reached orbit", "a comet lit the sky", "the probe landed"]
REFERENCE = [f"customer note number {i} about an order" for i in range(60)]


def run_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """The console script in a subprocess (as tests/test_cli.py runs it)."""
    script = Path(sys.executable).with_name("embedtasks")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "embedtasks"]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OPENAI_API_KEY": "test-key",
        "COLUMNS": "160",
    }
    return subprocess.run(
        [*command, *map(str, args)], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=240,
    )  # fmt: skip


def run_main(*args: object, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse: --help, usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def remote(server, tmp_path: Path) -> list[object]:
    """The loopback server and a cache under tmp_path."""
    return ["--base-url", server.url, "--model", "fake", "--cache-dir", tmp_path / "c"]


@pytest.fixture
def server(fake_server):
    return fake_server(dim=16)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    reference = tmp_path / "reference.csv"
    pd.DataFrame({"text": REFERENCE}).to_csv(reference, index=False)
    new = tmp_path / "new.csv"
    texts = REFERENCE[:30] + [t for t in NOVEL for _ in range(10)]
    pd.DataFrame({"text": texts}).to_csv(new, index=False)
    return reference, new


def test_drift_prints_verdict_clusters_and_examples(server, files, tmp_path):
    reference, new = files
    result = run_cli(
        "drift", reference, new, *remote(server, tmp_path), "--n-clusters", "4",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("DriftTest: the new set differs from the reference (p =")
    # random vectors form no clusters: the table shows the largest changes
    assert "share_reference" in out and "difference" in out
    assert "new rows least like the reference" in out
    assert any(text in out for text in NOVEL)


def test_drift_json_has_every_figure_and_file_rows(server, files, tmp_path, capsys):
    reference, new = files
    frame = pd.read_csv(new)
    frame.loc[len(frame)] = [""]  # an empty last row, skipped
    frame = pd.concat([pd.DataFrame({"text": [""]}), frame], ignore_index=True)
    frame.to_csv(new, index=False)
    code, out, err = run_main(
        "drift", reference, new, *remote(server, tmp_path), "--format", "json",
        "--on-empty", "skip", "--n-permutations", "99", capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["drifted"] is True and data["p_value"] == pytest.approx(0.01)
    assert data["n_reference"] == 60 and data["n_new"] == 60
    assert data["reference"] == str(reference) and data["new"] == str(new)
    low, high = data["confidence_interval"]
    assert low < data["statistic"] < high
    assert {"name", "change", "share_reference", "share_new"} <= set(
        data["clusters"][0]
    )
    examples = data["examples"]
    assert len(examples) == 10
    for example in examples:  # rows of the file (its empty row 0 counted)
        assert frame["text"][example["index"]] == example["text"]
        assert example["text"] in NOVEL
        assert (
            REFERENCE[example["nearest_reference"]]
            == (example["nearest_reference_text"])
        )


def test_drift_csv_prints_the_cluster_table_and_writes_files(
    server, files, tmp_path, capsys
):
    reference, new = files
    code, out, err = run_main(
        "drift", reference, new, *remote(server, tmp_path), "--format", "csv",
        "-o", tmp_path / "clusters.parquet", "--examples-output",
        tmp_path / "examples.csv", "--n-clusters", "3", capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    table = pd.read_csv(io.StringIO(out), keep_default_na=False)
    assert list(table.columns[:3]) == ["cluster", "name", "change"]
    assert len(table) == 3 and table["n_new"].sum() == 60
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "clusters.parquet").drop(columns="name"),
        table.drop(columns="name"),
        check_dtype=False,
    )
    assert pd.read_csv(tmp_path / "examples.csv")["text"].isin(NOVEL).all()


def test_drift_same_file_finds_no_drift(server, files, tmp_path, capsys):
    reference, _ = files
    code, out, err = run_main(
        "drift", reference, reference, *remote(server, tmp_path), capsys=capsys
    )
    assert code == 0, err
    assert out.startswith("DriftTest: no evidence")
    assert "no cluster's share changed" in out


def test_drift_missing_reference_exits_2(server, files, tmp_path):
    _, new = files
    result = run_cli(
        "drift", tmp_path / "nope.csv", new, *remote(server, tmp_path), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "nope.csv" in result.stderr and len(result.stderr.splitlines()) == 1


def test_drift_bad_flags_exit_2_before_embedding(files, tmp_path, capsys):
    reference, new = files
    with pytest.raises(SystemExit) as exc:
        main(["drift", str(reference), str(new), "--n-permutations", "0"])
    assert exc.value.code == 2
    assert "--n-permutations: must be a whole number >= 1" in capsys.readouterr().err
    code, _, err = run_main(
        "drift", reference, new, "-o", tmp_path / "x.bin", capsys=capsys
    )
    assert code == 2 and "x.bin" in err


def test_drift_help_names_both_files(capsys):
    code, out, _ = run_main("drift", "--help", capsys=capsys)
    assert code == 0
    assert "usage: embedtasks drift" in out and "reference new" in out
    assert "--n-permutations" in out and "--base-url" in out


def test_report_with_reference_opens_with_drift(server, files, tmp_path):
    pytest.importorskip("plotly")
    reference, new = files
    out = tmp_path / "page.html"
    result = run_cli(
        "report", new, "--reference", reference, *remote(server, tmp_path),
        "--n-clusters", "3", "--reduction", "pca", "-o", out, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    assert '<section id="drift"><h2>Drift from the reference</h2>' in page
    assert "This corpus differs from the reference" in page
    assert page.index('id="drift"') < page.index('id="map"')
    assert NOVEL[0] in page


def test_report_function_with_reference_escapes_and_keeps_the_result():
    pytest.importorskip("plotly")
    import numpy as np

    from embedtasks import DriftResult, DriftTest, EmbeddingClusterer, report

    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:3]
    ref = centres[np.arange(60) % 2] + 0.05 * rng.normal(size=(60, 8))
    new = centres[np.arange(60) % 3] + 0.05 * rng.normal(size=(60, 8))
    ref_texts = [f"old {i}" for i in range(60)]
    new_texts = [f"</script><b>new</b> {i}" for i in range(60)]
    page = report(
        new_texts,
        new,
        reference=ref_texts,
        reference_X=ref,
        drift_test=DriftTest(n_clusters=3, random_state=0),
        clusterer=EmbeddingClusterer(
            reduction="pca", n_components=2, min_cluster_size=5, random_state=0
        ),
    )
    assert isinstance(page.drift, DriftResult) and page.drift.drifted
    assert "&lt;/script&gt;&lt;b&gt;new&lt;/b&gt;" in page.html
    section = page.html[page.html.index('id="drift"') : page.html.index('id="map"')]
    assert "<b>new</b>" not in section and "grew" in section
    with pytest.raises(ValueError, match="reference_X without reference"):
        report(new_texts, new, reference_X=ref)
