"""The `embedtasks` command line on small files.

The console script itself runs in a subprocess for each subcommand's main path and
for the error exits; finer cases call :func:`embedtasks.cli.main` in-process (same
code, no interpreter start-up). Most tests embed through a loopback OpenAI-compatible
server (deterministic fake vectors, no model needed); those marked ``local_model``
use the bundled MiniLM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedtasks.cli import main

TEXTS = [
    "the cat sat on the mat",
    "a dog barked at the postman",
    "interest rates rose again this quarter",
    "the central bank cut its lending rate",
    "a kitten chased a ball of wool",
    "stocks fell after the earnings report",
]


def _script() -> list[str]:
    script = Path(sys.executable).with_name("embedtasks")
    return [str(script)] if script.exists() else [sys.executable, "-m", "embedtasks"]


def run_cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "test-key"}
    return subprocess.run(
        [*_script(), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(*args: object, capsys) -> tuple[int, str, str]:
    """Run the command in-process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse: --help, usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def server(fake_server):
    return fake_server(dim=16)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "docs.csv"
    pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS}).to_csv(path, index=False)
    return path


def remote(server, tmp_path: Path) -> list[str]:
    """Embedder flags: the loopback server, a cache under tmp_path, quiet."""
    return ["--base-url", server.url, "--model", "fake", "--cache-dir", tmp_path / "c"]


def test_help_lists_commands(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("demo", "embed", "search", "cluster", "outliers", "diversity"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "command",
    ["demo", "embed", "search", "cluster", "outliers", "diversity", "classify"],
)
def test_subcommand_help_lists_options(command, capsys):
    code, stdout, _ = run_main(command, "--help", capsys=capsys)
    assert code == 0
    assert f"usage: embedtasks {command}" in stdout
    assert "--base-url" in stdout and "--cache-dir" in stdout


def test_no_command_is_a_usage_error(tmp_path):
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: embedtasks" in result.stderr


def test_embed_writes_npy_and_rerun_hits_cache(server, data, tmp_path):
    out = tmp_path / "vectors.npy"
    first = run_cli("embed", data, "-o", out, *remote(server, tmp_path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    X = np.load(out)
    assert X.dtype == np.float32 and X.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    requests = server.n_requests
    assert requests >= 1

    again = run_cli("embed", data, "-o", out, *remote(server, tmp_path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{len(TEXTS)} from the cache, 0 new" in again.stderr
    assert server.n_requests == requests  # nothing sent the second time
    np.testing.assert_array_equal(np.load(out), X)


def test_embed_jsonl_to_parquet_keeps_columns(server, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(json.dumps({"body": t, "n": i}) for i, t in enumerate(TEXTS)) + "\n"
    )
    out = tmp_path / "out.parquet"
    flags = remote(server, tmp_path)
    code, stdout, err = run_main(
        "embed", src, "-c", "body", "-o", out, *flags, capsys=capsys
    )
    assert code == 0, err
    table = pd.read_parquet(out)
    assert list(table.columns) == ["body", "n", "embedding"]
    assert len(table["embedding"][0]) == 16
    assert table["body"].tolist() == TEXTS


def test_embed_missing_file_exits_2(server, tmp_path):
    flags = remote(server, tmp_path)
    result = run_cli("embed", "nope.csv", "-o", "x.npy", *flags, cwd=tmp_path)
    assert result.returncode == 2
    assert "input file 'nope.csv' not found" in result.stderr
    assert not (tmp_path / "x.npy").exists()


def test_embed_missing_column_names_the_columns(server, data, tmp_path):
    flags = remote(server, tmp_path)
    result = run_cli("embed", data, "-c", "body", "-o", "x.npy", *flags, cwd=tmp_path)
    assert result.returncode == 2
    assert "column 'body' not found" in result.stderr
    assert "'id', 'text'" in result.stderr and "--column" in result.stderr


def test_unknown_extension_exits_2(server, tmp_path, capsys):
    (tmp_path / "in.xlsx").write_text("x")
    flags = remote(server, tmp_path)
    code, stdout, err = run_main(
        "embed", tmp_path / "in.xlsx", "-o", tmp_path / "x.npy", *flags, capsys=capsys
    )
    assert code == 2
    assert "cannot tell the format" in err and "'.xlsx'" in err


def test_empty_text_exits_1_naming_the_row(server, tmp_path, capsys):
    src = tmp_path / "gaps.csv"
    pd.DataFrame({"text": ["fine", None, "also fine"]}).to_csv(src, index=False)
    flags = remote(server, tmp_path)
    code, stdout, err = run_main(
        "embed", src, "-o", tmp_path / "x.npy", *flags, capsys=capsys
    )
    assert code == 1
    assert "row 1" in err and "missing value" in err


def test_unreachable_server_exits_1(data, tmp_path, capsys):
    flags = ["--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0"]
    flags += ["--cache-dir", tmp_path / "c"]
    code, stdout, err = run_main(
        "embed", data, "-o", tmp_path / "x.npy", *flags, "--model", "m", capsys=capsys
    )
    assert code == 1
    assert "embedtasks embed: error:" in err
    assert "Traceback" not in err


def test_search_finds_exact_text_first(server, data, tmp_path):
    out = tmp_path / "hits.csv"
    result = run_cli(
        "search", data, "--query", TEXTS[3], "--query", TEXTS[0], "-k", "2",
        "--id-column", "id", "-o", out, *remote(server, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    hits = pd.read_csv(out)
    assert list(hits.columns) == ["query", "rank", "score", "row", "id", "text"]
    top = hits[hits["rank"] == 1]
    assert top["id"].tolist() == [3, 0]
    np.testing.assert_allclose(top["score"], 1.0, atol=1e-4)
    assert len(hits) == 4
    assert TEXTS[3] in result.stdout


def test_search_needs_a_query(server, data, tmp_path, capsys):
    code, stdout, err = run_main(
        "search", data, *remote(server, tmp_path), capsys=capsys
    )
    assert code == 2
    assert "give at least one query" in err


def test_search_queries_file(server, data, tmp_path, capsys):
    (tmp_path / "q.txt").write_text(f"{TEXTS[4]}\n\n{TEXTS[2]}\n")
    out = tmp_path / "hits.jsonl"
    code, stdout, err = run_main(
        "search", data, "--queries-file", tmp_path / "q.txt", "-k", "1", "-o", out,
        *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    hits = pd.read_json(out, lines=True)
    assert hits["row"].tolist() == [4, 2]


def test_cluster_writes_labels(server, data, tmp_path):
    out = tmp_path / "clusters.csv"
    result = run_cli(
        "cluster", data, "--n-clusters", "2", "--reduction", "none", "-o", out,
        *remote(server, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["id", "text", "cluster", "probability"]
    assert set(table["cluster"]) == {0, 1}
    assert "2 clusters" in result.stderr
    assert "keywords" in result.stdout


def test_outliers_scores_every_row(server, data, tmp_path):
    out = tmp_path / "scored.parquet"
    result = run_cli(
        "outliers", data, "--n-neighbors", "2", "--top", "3", "-o", out,
        *remote(server, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    assert list(table.columns) == ["id", "text", "outlier_score", "is_outlier"]
    assert table["outlier_score"].between(0, 2).all()
    assert result.stdout.count("\n") == 4  # header + top 3


def test_diversity_per_group(server, data, tmp_path):
    src = tmp_path / "grouped.csv"
    frame = pd.DataFrame({"text": TEXTS + [TEXTS[0]], "g": list("aabbcca")})
    frame.to_csv(src, index=False)
    out = tmp_path / "report.csv"
    result = run_cli(
        "diversity", src, "--group-column", "g", "-o", out,
        *remote(server, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert table["group"].tolist() == ["all", "a", "b", "c"]
    assert "vendi_score" in table.columns
    assert "near-duplicates (1.000)" in result.stdout  # the repeated text


def test_diversity_missing_group_column(server, data, tmp_path, capsys):
    code, stdout, err = run_main(
        "diversity", data, "--group-column", "nope",
        *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 2
    assert "column 'nope' not found" in err and "--group-column" in err


def test_classify_from_a_training_file(server, tmp_path):
    train = tmp_path / "train.csv"
    labels = ["pets", "pets", "money", "money", "pets", "money"]
    pd.DataFrame({"text": TEXTS, "label": labels}).to_csv(train, index=False)
    out = tmp_path / "labelled.csv"
    result = run_cli(
        "classify", train, "--train", train, "-o", out,
        *remote(server, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert table["label"].tolist() == labels  # each text is its own best example
    assert table["probability"].between(0, 1).all()


def test_classify_needs_classes(server, data, tmp_path, capsys):
    code, stdout, err = run_main(
        "classify", data, *remote(server, tmp_path), capsys=capsys
    )
    assert code == 2
    assert "--labels" in err and "--train" in err


@pytest.mark.local_model
def test_local_search_and_zero_shot_classify(data, tmp_path):
    cache = ["--cache-dir", tmp_path / "c"]
    result = run_cli(
        "search", data, "--query", "a small cat playing", "-k", "2", "-o", "hits.csv",
        *cache, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    hits = pd.read_csv(tmp_path / "hits.csv")
    assert set(hits["row"]) == {0, 4}  # the two cat texts
    out = tmp_path / "labelled.csv"
    result = run_cli(
        "classify", data, "--labels", "animals,finance", "-o", out, *cache,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(out)["label"].tolist() == [
        "animals", "animals", "finance", "finance", "animals", "finance",
    ]  # fmt: skip


@pytest.mark.local_model
def test_demo_runs_every_task_and_reruns_from_cache(tmp_path):
    args = ("demo", "--n-texts", "200", "--cache-dir", tmp_path / "c", "--no-progress")
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for title in (
        "Search",
        "Recommend",
        "Cluster",
        "Outliers",
        "Diversity",
        "Classify",
    ):
        assert f"== {title}" in first.stdout
    assert "200 embedded" in first.stdout
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "200 from the cache, 0 embedded" in again.stdout
