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


def run_cli(
    *args: str, cwd: Path, timeout: float = 240, env: dict | None = None
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OPENAI_API_KEY": "test-key",
        **(env or {}),
    }
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
    [
        "demo",
        "embed",
        "search",
        "cluster",
        "outliers",
        "diversity",
        "classify",
        "dedupe",
        "leakage",
    ],
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


def test_empty_text_exits_2_naming_the_row_and_the_fix(server, tmp_path, capsys):
    src = tmp_path / "gaps.csv"
    pd.DataFrame({"text": ["fine", None, "also fine"]}).to_csv(src, index=False)
    flags = remote(server, tmp_path)
    code, stdout, err = run_main(
        "embed", src, "-o", tmp_path / "x.npy", *flags, capsys=capsys
    )
    assert code == 2
    assert "row 1 (0-based)" in err and "--on-empty skip" in err
    assert server.n_requests == 0


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
    assert list(hits.columns) == [
        "query", "query_text", "rank", "index", "id", "score", "text",
    ]  # fmt: skip
    top = hits[hits["rank"] == 0]  # 0-based, as DotProductNeighbors.search
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
    assert hits["index"].tolist() == [4, 2]
    assert hits["query"].tolist() == [0, 1]


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
    assert result.stdout.count("\n") == 5  # header + top 3 + "3 more rows"
    assert "3 more rows" in result.stdout


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
    assert "near-duplicate pairs" in result.stdout  # the repeated text
    assert "1.0000" in result.stdout


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
    assert set(hits["index"]) == {0, 4}  # the two cat texts
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


# -- output that fits, the same names as Python, forgiving input --------------------
LONG = [
    "Un paragraphe très long, avec des accents et des guillemets « ici », "
    "qui continue encore et encore sur plusieurs phrases pour dépasser la largeur. "
    * 8,
    "日本語のテキストはここにあります。とても長い文章です。" * 10,
    'a "quoted" text, with commas; semicolons\tand a tab\nand a newline',
    "NA",
    "null",
    "None",
    "short",
    "🙂 emoji 🚀 text with zero-width\u200bspace and RTL \u202emark",
]


@pytest.fixture
def odd(tmp_path: Path) -> Path:
    """Unicode, long paragraphs, quotes, newlines and cells that look missing."""
    path = tmp_path / "odd.csv"
    frame = pd.DataFrame(
        {
            "id": [f"00{i}" for i in range(len(LONG))],
            "text": LONG,
            "group": list("aabbccdd"),
        }
    )
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["search", "--query", "long text", "--query", "日本語", "-k", "3"],
        ["classify", "--labels", "french,japanese,english"],
        ["outliers", "--n-neighbors", "2"],
        ["cluster", "--n-clusters", "2", "--reduction", "none"],
        ["diversity", "--group-column", "group", "--duplicate-threshold", "0.1"],
        ["recommend", "--row", "0", "-k", "4"],
    ],
    ids=lambda c: c[0],
)
def test_tables_fit_the_terminal(command, server, odd, tmp_path):
    result = run_cli(
        command[0], odd, *command[1:], "--id-column", "id",
        *remote(server, tmp_path), cwd=tmp_path, env={"COLUMNS": "100"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) >= 2
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    assert lines[0 if command[0] not in {"search", "recommend"} else 1].strip()
    notes = result.stderr.splitlines()  # notes and warnings are wrapped too
    assert notes and max(map(len, notes)) <= 100, max(notes, key=len)


def test_long_notes_wrap_to_the_terminal(server, odd, tmp_path):
    """Notes longer than a narrow terminal are wrapped, not cut or left wide."""
    result = run_cli(
        "search", odd, "--query", "long text", "-k", "1", *remote(server, tmp_path),
        cwd=tmp_path, env={"COLUMNS": "40"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) >= 2 and max(map(len, lines)) <= 40, result.stderr
    assert lines[0].startswith("embedtasks search: ")
    assert all(line.startswith("  ") for line in lines[1:])


def test_missing_column_lists_the_columns_on_one_line(server, tmp_path):
    wide = tmp_path / "wide.csv"
    pd.DataFrame({f"column_{i}": ["a text"] for i in range(31)}).to_csv(
        wide, index=False
    )
    result = run_cli(
        "search", wide.name, "--column", "body", "--query", "x",
        *remote(server, tmp_path), cwd=tmp_path, env={"COLUMNS": "60"},
    )  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.splitlines()  # errors stay on one line
    assert line.startswith("embedtasks search: error: column 'body' not found")
    assert "'column_29' and 1 more" in line and "--column" in line


def test_classify_table_shows_label_and_probability_first(server, odd, tmp_path):
    result = run_cli(
        "classify", odd, "--labels", "french,japanese", *remote(server, tmp_path),
        cwd=tmp_path, env={"COLUMNS": "80"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header == ["index", "label", "probability", "text"]


@pytest.mark.filterwarnings("ignore:NearestLabelClassifier. predict_proba is not")
def test_texts_that_look_missing_are_texts(server, odd, tmp_path, capsys):
    out = tmp_path / "labelled.jsonl"
    code, _, err = run_main(
        "classify", odd, "--labels", "a,b", "-o", out, "--id-column", "id",
        *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    table = pd.read_json(out, lines=True, dtype=False)
    assert table["text"].tolist() == LONG  # "NA", "null", "None" kept, unicode intact
    assert table["id"].tolist()[:2] == ["000", "001"]  # ids read as text


def test_jsonl_round_trips(server, odd, tmp_path, capsys):
    out = tmp_path / "hits.jsonl"
    code, stdout, err = run_main(
        "search", odd, "-q", "a long paragraph", "-q", "emoji", "-k", "8",
        "--id-column", "id", "--format", "jsonl", "-o", out,
        *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    printed = [json.loads(line) for line in stdout.splitlines()]
    written = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert printed == written
    assert len(printed) == 16
    assert [r["rank"] for r in printed[:8]] == list(range(8))
    assert {r["text"] for r in printed} == set(LONG)
    assert {r["id"] for r in printed} == {f"00{i}" for i in range(8)}
    for record in printed:
        assert LONG[record["index"]] == record["text"]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_other_formats_parse(fmt, server, odd, tmp_path, capsys):
    code, stdout, err = run_main(
        "outliers", odd, "--n-neighbors", "2", "--top", "0", "--format", fmt,
        *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    from io import StringIO

    read = pd.read_csv if fmt == "csv" else pd.read_json
    table = (
        read(StringIO(stdout), keep_default_na=False)
        if fmt == "csv"
        else read(StringIO(stdout))
    )
    assert list(table.columns) == ["index", "outlier_score", "is_outlier", "text"]
    assert sorted(table["index"]) == list(range(len(LONG)))
    assert table["outlier_score"].is_monotonic_decreasing


@pytest.mark.filterwarnings("ignore:NearestLabelClassifier. predict_proba is not")
def test_on_empty_skip_keeps_every_other_row(server, tmp_path, capsys):
    src = tmp_path / "gaps.csv"
    texts = [TEXTS[0], "", TEXTS[2], "   ", TEXTS[4], None]
    pd.DataFrame({"text": texts, "n": range(6)}).to_csv(src, index=False)
    out = tmp_path / "labelled.csv"
    code, stdout, err = run_main(
        "classify", src, "--labels", "pets,money", "--on-empty", "skip", "-o", out,
        "--format", "jsonl", *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "skipped 3 empty rows: 1, 3, 5" in err
    assert [json.loads(line)["index"] for line in stdout.splitlines()] == [0, 2, 4]
    table = pd.read_csv(out)
    assert table["n"].tolist() == list(range(6))  # every row kept, in order
    assert table["label"].isna().tolist() == [False, True, False, True, False, True]
    assert table["probability"].notna().sum() == 3

    vectors = tmp_path / "x.npy"
    code, _, err = run_main(
        "embed", src, "--on-empty", "skip", "-o", vectors,
        *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    X = np.load(vectors)
    assert X.shape == (6, 16)
    assert np.isnan(X[[1, 3, 5]]).all() and not np.isnan(X[[0, 2, 4]]).any()


def test_numeric_column_is_named_as_such(server, data, tmp_path, capsys):
    code, _, err = run_main(
        "embed", data, "-c", "id", "-o", tmp_path / "x.npy",
        *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 2
    assert "holds numbers" in err and "'text'" in err and "--column" in err


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (
            ["search", "-q", "x", "-k", "0"],
            "argument -k: must be a whole number >= 1, got 0",
        ),
        (
            ["cluster", "--min-cluster-size", "1"],
            "--min-cluster-size: must be a whole number >= 2 or auto, got 1",
        ),
        (
            ["cluster", "--max-noise", "1.5"],
            "--max-noise: must be a number in [0, 1], got 1.5",
        ),
        (
            ["outliers", "--contamination", "0.9"],
            "--contamination: must be auto or a number in (0, 0.5], got 0.9",
        ),
        (
            ["outliers", "--n-neighbors", "abc"],
            "--n-neighbors: must be a whole number >= 1, got abc",
        ),
        (["diversity", "--duplicate-threshold", "2"], "--duplicate-threshold"),
        (["recommend", "--row", "-1"], "argument --row: must be >= 0"),
        (["search", "-q", "x", "--batch-size", "0"], "--batch-size: must be >= 1"),
    ],
)
def test_bad_flags_fail_before_embedding(command, flag, server, data, tmp_path):
    result = run_cli(
        command[0], data, *command[1:], *remote(server, tmp_path), cwd=tmp_path
    )
    assert result.returncode == 2
    assert flag in result.stderr
    assert server.n_requests == 0


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["search", "-q", "x", "-o", "out.xlsx"], "cannot tell the format"),
        (["outliers", "--n-neighbors", "6"], "--n-neighbors 6 needs more than 6"),
        (["cluster", "--n-clusters", "7"], "--n-clusters 7 is more than the 6"),
        (["report", "--n-clusters", "7"], "--n-clusters 7 is more than the 6"),
        (["report", "--min-cluster-size", "9"], "--min-cluster-size 9 is more than"),
        (["recommend", "--row", "9"], "--row 9 is outside the 6 rows"),
        (["recommend", "--id", "x"], "--id needs --id-column"),
        (["recommend", "--id", "x", "--id-column", "id"], "--id 'x' is not in"),
        (["classify", "--labels", "one"], "--labels needs at least two classes"),
        (["search", "-q", "x", "--id-column", "nope"], "column 'nope' not found"),
    ],
)
def test_data_checks_fail_before_embedding(command, message, server, data, tmp_path):
    result = run_cli(
        command[0], data, *command[1:], *remote(server, tmp_path), cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert server.n_requests == 0


def test_recommend_excludes_the_liked_rows(server, data, tmp_path, capsys):
    out = tmp_path / "more.csv"
    code, stdout, err = run_main(
        "recommend", data, "--id", "3", "--row", "0", "--id-column", "id", "-k", "3",
        "--exclude", "5", "-o", out, *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    table = pd.read_csv(out)
    assert list(table.columns) == ["rank", "index", "id", "score", "text"]
    assert table["rank"].tolist() == [0, 1, 2]
    assert not {0, 3, 5} & set(table["index"])
    assert (table["text"] == [TEXTS[i] for i in table["index"]]).all()
    assert "more like rows 0, 3" in stdout


def test_cluster_and_diversity_write_every_artefact(server, tmp_path, capsys):
    src = tmp_path / "dup.csv"
    pd.DataFrame({"text": TEXTS + [TEXTS[1]], "g": list("aabbcca")}).to_csv(
        src, index=False
    )
    flags = remote(server, tmp_path)
    summary = tmp_path / "summary.jsonl"
    code, stdout, err = run_main(
        "cluster", src, "--n-clusters", "2", "--reduction", "none",
        "--summary-output", summary, "--format", "json", *flags, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    written = pd.read_json(summary, lines=True)
    assert written["cluster"].tolist() == [0, 1]
    assert json.loads(stdout) == json.loads(written.to_json(orient="records"))
    pairs, groups = tmp_path / "pairs.csv", tmp_path / "groups.parquet"
    code, _, err = run_main(
        "diversity", src, "--group-column", "g", "--pairs-output", pairs,
        "-o", groups, *flags, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    found = pd.read_csv(pairs)
    assert found[["index_a", "index_b"]].values.tolist() == [[1, 6]]
    assert found["text_a"].tolist() == [TEXTS[1]]
    assert pd.read_parquet(groups)["group"].tolist() == ["all", "a", "b", "c"]


def test_odd_files_are_read(server, tmp_path, capsys):
    flags = remote(server, tmp_path)
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text("id;text\n1;café au lait\n2;a second, longer text\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text\ncaf\xe9 cr\xe8me\nna\xefve\n".encode("cp1252"))
    lines = tmp_path / "lines.txt"
    lines.write_text("first line\n\nsecond line\n", "utf-8")
    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"text": "one"}, {"text": "two"}]))
    parquet = tmp_path / "in.parquet"
    pd.DataFrame({"text": ["x y", None, "z w"]}).to_parquet(parquet)
    for path, n in [(semicolons, 2), (latin, 2), (lines, 2), (array, 2), (parquet, 2)]:
        code, stdout, err = run_main(
            "outliers", path, "--n-neighbors", "1", "--format", "jsonl",
            "--on-empty", "skip", *flags, capsys=capsys,
        )  # fmt: skip
        assert code == 0, (path, err)
        assert len(stdout.splitlines()) == n, path
    code, stdout, _ = run_main(
        "outliers", latin, "--n-neighbors", "1", "--format", "csv", *flags,
        capsys=capsys,
    )  # fmt: skip
    assert "café crème" in stdout


def test_help_imports_no_heavy_library(tmp_path):
    code = (
        "import sys\n"
        "from embedtasks.cli import main\n"
        "try:\n    main(['cluster', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'sklearn', 'pandas', 'umap', 'onnxruntime', 'hdbscan', 'numpy'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_quiet_keeps_the_results(server, data, tmp_path, capsys):
    code, stdout, err = run_main(
        "search", data, "-q", TEXTS[0], "-k", "1", "--quiet",
        *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 0
    assert err == "" and TEXTS[0] in stdout


@pytest.mark.local_model
def test_local_model_tables_fit_and_jsonl_round_trips(odd, tmp_path):
    """The default embedder on unicode and long paragraphs, as a new user runs it."""
    cache = ["--cache-dir", tmp_path / "c"]
    env = {"COLUMNS": "100"}
    for command in (
        ["search", odd, "-q", "日本語の文章", "-k", "2"],
        ["classify", odd, "--labels", "french,japanese,english"],
        ["outliers", odd, "--n-neighbors", "2"],
    ):
        result = run_cli(*command, *cache, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert max(map(len, result.stdout.splitlines())) <= 100
    result = run_cli(
        "search", odd, "-q", "日本語の文章", "-k", "1", "--format", "jsonl", *cache,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (hit,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert hit["index"] == 1 and hit["text"] == LONG[1] and hit["rank"] == 0


@pytest.mark.local_model
@pytest.mark.parametrize("flag", [["--assign-noise"], ["--max-noise", "0"]])
def test_cluster_noise_flags_reach_the_clusterer(flag, tmp_path, capsys):
    src = tmp_path / "many.csv"
    texts = [f"{word} number {i}" for i in range(12) for word in ("a cat", "a bank")]
    texts += ["the recipe needs flour", "quantum physics lecture"]  # noise
    pd.DataFrame({"text": texts}).to_csv(src, index=False)
    out = tmp_path / "rows.csv"
    code, _, err = run_main(
        "cluster", src, "--min-cluster-size", "2", "--reduction", "none", *flag,
        "-o", out, "--cache-dir", tmp_path / "c", capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    clusters = pd.read_csv(out)["cluster"]
    assert clusters.nunique() >= 2 and (clusters >= 0).all()  # no noise left


def test_cluster_flags_default_to_the_estimator():
    """The CLI clusters as EmbeddingClusterer() does (cluster and report alike)."""
    from embedtasks import EmbeddingClusterer
    from embedtasks.cli import build_parser
    from embedtasks.cli._args import resolve_defaults

    model = EmbeddingClusterer()
    for command in ("cluster", "report"):
        args = build_parser().parse_args([command, "data.csv"])
        resolve_defaults(args)
        assert args.max_noise == model.max_noise
        assert args.min_cluster_size == model.min_cluster_size
        assert args.assign_noise == model.assign_noise
        assert args.cluster_selection_method == model.cluster_selection_method


def test_cluster_selection_method_flag_reaches_the_clusterer():
    from embedtasks.cli import build_parser
    from embedtasks.cli._args import resolve_defaults
    from embedtasks.cli._cluster import _clusterer

    for command in ("cluster", "report"):
        args = build_parser().parse_args(
            [command, "data.csv", "--cluster-selection-method", "leaf"]
        )
        resolve_defaults(args)
        assert _clusterer(args, 300).cluster_selection_method == "leaf"
        args = build_parser().parse_args([command, "data.csv"])
        resolve_defaults(args)
        assert _clusterer(args, 300).cluster_selection_method == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["cluster", "x.csv", "--cluster-selection-method", "x"]
        )


# -- dedupe, leakage (NearDuplicates) ---------------------------------------------
def _write(path, texts, prefix):
    ids = [f"{prefix}{i}" for i in range(len(texts))]
    pd.DataFrame({"id": ids, "text": texts}).to_csv(path, index=False)
    return path


def test_dedupe_adds_group_and_keep(server, tmp_path):
    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[2], TEXTS[1], TEXTS[0]]
    src = _write(tmp_path / "docs.csv", texts, "r")
    out = tmp_path / "grouped.csv"
    result = run_cli(
        "dedupe", src, "--id-column", "id", "-o", out,
        *remote(server, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert table["group"].tolist() == [0, 1, 0, 2, 1, 0]
    assert table["keep"].tolist() == [True, True, False, True, False, False]
    assert table["id"].tolist() == [f"r{i}" for i in range(6)]
    assert "6 rows in 3 groups; 3 rows are near-copies" in result.stderr
    lines = result.stdout.splitlines()
    assert "group" in lines[1] and "keep" in lines[1]
    assert lines[2].split()[:4] == ["0", "0", "r0", "True"]  # the kept row first
    assert TEXTS[0] in result.stdout and TEXTS[2] not in result.stdout
    # six rows: too few to see two modes, so the derived threshold is 0.95
    assert "similarity to the kept row >= 0.950" in result.stdout


def test_dedupe_threshold_flag_takes_auto_or_a_number(capsys):
    code, stdout, _ = run_main("dedupe", "--help", capsys=capsys)
    assert code == 0 and "deduplication.md) (auto)" in " ".join(stdout.split())
    code, _, err = run_main("dedupe", "x.csv", "--threshold", "high", capsys=capsys)
    assert code == 2 and "--threshold" in err and "high" in err


def test_dedupe_drop_writes_kept_rows(server, tmp_path):
    src = _write(tmp_path / "docs.csv", [TEXTS[0], TEXTS[0], TEXTS[3]], "r")
    out = tmp_path / "kept.csv"
    result = run_cli(
        "dedupe", src, "-o", out, "--drop", *remote(server, tmp_path), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    kept = pd.read_csv(out)
    assert kept["id"].tolist() == ["r0", "r2"] and kept["keep"].all()


def test_dedupe_skipped_rows_stay_without_group(server, tmp_path, capsys):
    src = tmp_path / "docs.csv"
    pd.DataFrame({"text": [TEXTS[0], "", TEXTS[0]]}).to_csv(src, index=False)
    out = tmp_path / "kept.csv"
    code, _, err = run_main(
        "dedupe", src, "--on-empty", "skip", "-o", out, "--drop",
        *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    kept = pd.read_csv(out, keep_default_na=False)
    assert kept["text"].tolist() == [TEXTS[0], ""]  # the empty row: no group
    assert kept["group"].tolist() == ["0", ""]


def test_dedupe_drop_needs_output(server, tmp_path, capsys):
    src = _write(tmp_path / "docs.csv", TEXTS, "r")
    code, _, err = run_main(
        "dedupe", src, "--drop", *remote(server, tmp_path), capsys=capsys
    )
    assert code == 2
    assert "--drop needs -o FILE" in err and len(err.strip().splitlines()) == 1


def test_leakage_prints_summary_and_leaked_rows(server, tmp_path):
    train = _write(tmp_path / "train.csv", TEXTS[:4], "tr")
    test = _write(tmp_path / "test.csv", [TEXTS[4], TEXTS[1], TEXTS[5]], "te")
    out = tmp_path / "leak.csv"
    result = run_cli(
        "leakage", train, test, "--id-column", "id", "-o", out, "--threshold", "0.95",
        *remote(server, tmp_path), cwd=tmp_path, env={"COLUMNS": "160"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.startswith("1 of 3 test rows (33.3%) near-duplicate a training row")
    assert "(similarity >= 0.950, fixed); chance: 0.0% (a held-out slice of 2 " in first
    table = "\n".join(rest)
    assert "te1" in table and "tr1" in table and TEXTS[1] in table
    assert "te0" not in table
    frame = pd.read_csv(out)
    assert frame["leaked"].tolist() == [False, True, False]
    assert frame["train_index"][1] == 1 and frame["test_id"][1] == "te1"
    assert frame["text_train"][1] == frame["text_test"][1] == TEXTS[1]


def test_leakage_threshold_auto_by_default(server, tmp_path, capsys):
    train = _write(tmp_path / "train.csv", TEXTS, "tr")
    test = _write(tmp_path / "test.csv", [TEXTS[2]], "te")
    code, out, err = run_main(
        "leakage", train, test, *remote(server, tmp_path), capsys=capsys
    )
    assert code == 0, err
    assert out.startswith("1 of 1 test rows (100.0%)") and ", auto); chance" in out


def test_leakage_missing_test_file(server, tmp_path, capsys):
    train = _write(tmp_path / "train.csv", TEXTS, "tr")
    code, _, err = run_main(
        "leakage", train, tmp_path / "nope.csv", *remote(server, tmp_path),
        capsys=capsys,
    )  # fmt: skip
    assert code == 2 and "nope.csv" in err


def _many_texts(tmp_path: Path) -> Path:
    src = tmp_path / "many.csv"
    words = ["cat", "dog", "bank", "rate", "tax", "rain", "sun", "wind"]
    texts = [f"{w} story {i}" for i in range(6) for w in words]
    pd.DataFrame({"text": texts}).to_csv(src, index=False)
    return src


def test_cluster_topics_prints_the_topics_and_writes_each_ones_topic(
    server, tmp_path, capsys
):
    src = _many_texts(tmp_path)
    rows, summary = tmp_path / "rows.csv", tmp_path / "summary.jsonl"
    code, stdout, err = run_main(
        "cluster", src, "--n-clusters", "6", "--reduction", "none", "--topics", "2",
        "--format", "json", "-o", rows, "--summary-output", summary,
        *remote(server, tmp_path), capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "2 topics merged from the 6 clusters" in err
    topics = pd.DataFrame(json.loads(stdout))
    assert topics["topic"].tolist() == [0, 1]
    assert list(topics.columns[:5]) == ["topic", "name", "size", "share", "clusters"]
    assert sorted(c for held in topics["clusters"] for c in held) == list(range(6))
    assert topics["size"].sum() == 48
    clusters = pd.read_json(summary, lines=True)
    of_cluster = dict(zip(clusters["cluster"], clusters["topic"], strict=True))
    for topic, held in zip(topics["topic"], topics["clusters"], strict=True):
        assert {of_cluster[c] for c in held} == {topic}
    written = pd.read_csv(rows)
    assert list(written.columns) == ["text", "cluster", "probability", "topic"]
    assert (written["topic"] == written["cluster"].map(of_cluster)).all()


def test_cluster_topics_auto_and_bad_numbers(server, tmp_path, capsys):
    src = _many_texts(tmp_path)
    flags = ["--n-clusters", "6", "--reduction", "none", *remote(server, tmp_path)]
    code, stdout, err = run_main(
        "cluster", src, *flags, "--topics", "auto", "--format", "jsonl",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert 2 <= len(stdout.splitlines()) <= 4  # between sqrt(6) / 2 and 2 sqrt(6)
    code, _, err = run_main("cluster", src, *flags, "--topics", "9", capsys=capsys)
    assert code == 2
    assert "--topics 9:" in err and "merge the 6 fitted clusters" in err
    assert "pass 1 <= n_topics <= 6" in err
    for bad, said in [("0", "must be >= 1, got 0"), ("two", "got 'two'")]:
        code, _, err = run_main("cluster", src, *flags, "--topics", bad, capsys=capsys)
        assert code == 2 and "--topics" in err and said in err
    code, _, err = run_main("cluster", src, *flags, "--topics", "none", capsys=capsys)
    assert code == 2 and "got 'none'" in err  # cluster prints clusters without it
