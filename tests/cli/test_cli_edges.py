"""The command line at its edges: its own input, foreign caches, odd files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from embedtasks.cli import main

TEXTS = [
    "the cat sat on the mat",
    "a dog barked at the postman",
    "interest rates rose again this quarter",
    "the central bank cut its lending rate",
    "a kitten chased a ball of wool",
]


def run_main(*args: object, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def server(fake_server):
    return fake_server(dim=16)


def remote(server, tmp_path: Path) -> list[str]:
    return ["--base-url", server.url, "--model", "fake", "--cache-dir", tmp_path / "c"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "docs.csv"
    ids = [f"{i:05d}" for i in range(len(TEXTS))]
    pd.DataFrame({"id": ids, "price": ["1.50"] * 5, "text": TEXTS}).to_csv(
        path, index=False
    )
    return path


# -- 1: -o naming an input is refused ---------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ["search", "--query", "cat"],
        ["cluster", "--n-clusters", "2"],
        ["outliers"],
        ["embed"],
        ["report"],
    ],
)
def test_output_naming_the_input_is_refused(command, server, data, tmp_path, capsys):
    before = data.read_bytes()
    code, _, err = run_main(
        command[0],
        data,
        *command[1:],
        "-o",
        data,
        *remote(server, tmp_path),
        capsys=capsys,
    )
    assert code == 2
    assert "is the input file: writing there would overwrite your data" in err
    assert data.read_bytes() == before


def test_output_naming_the_input_by_another_path_is_refused(
    server, data, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        "search",
        data,
        "--query",
        "cat",
        "-o",
        "./sub/../docs.csv",
        *remote(server, tmp_path),
        capsys=capsys,
    )
    assert code == 2 and "is the input file" in err


# -- 2: cache commands only touch a cache the library made --------------------------
@pytest.mark.parametrize("action", ["clear", "info", "verify", "compact"])
def test_cache_commands_leave_a_foreign_database_alone(action, tmp_path, capsys):
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
        conn.execute("INSERT INTO orders VALUES (7)")
    conn.close()
    before = db.read_bytes()
    code, _, err = run_main("cache", action, "--cache-dir", db, capsys=capsys)
    assert code == 1
    assert "is not an embedtasks cache" in err and "damaged" not in err
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]


def test_cache_info_on_an_empty_folder_creates_nothing(tmp_path, capsys):
    code, out, _ = run_main("cache", "info", "--cache-dir", tmp_path, capsys=capsys)
    assert code == 0 and "no embedtasks cache" in out
    assert list(tmp_path.iterdir()) == []


def test_cache_clear_still_clears_our_own_cache(server, data, tmp_path, capsys):
    code, _, _ = run_main(
        "embed",
        data,
        "-o",
        tmp_path / "v.npy",
        *remote(server, tmp_path),
        capsys=capsys,
    )
    assert code == 0
    code, out, _ = run_main(
        "cache", "clear", "--cache-dir", tmp_path / "c", capsys=capsys
    )
    assert code == 0 and "cleared 5 vectors" in out


# -- 3: -o copies keep the other columns exactly ---------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_output_copy_keeps_other_columns_as_read(
    suffix, server, data, tmp_path, capsys
):
    out = tmp_path / f"out{suffix}"
    code, _, err = run_main(
        "cluster",
        data,
        "--n-clusters",
        "2",
        "-o",
        out,
        *remote(server, tmp_path),
        capsys=capsys,
    )
    assert code == 0, err
    if suffix == ".csv":
        back = pd.read_csv(out, dtype=str)
    elif suffix == ".parquet":
        back = pd.read_parquet(out)
    else:
        back = pd.read_json(out, lines=True, dtype=False)
    assert back["id"].tolist() == ["00000", "00001", "00002", "00003", "00004"]
    assert back["price"].tolist() == ["1.50"] * 5


def test_parquet_copy_keeps_its_types(server, tmp_path, capsys):
    src = tmp_path / "in.parquet"
    frame = pd.DataFrame(
        {"code": ["007", "010", "1", "2", "3"], "n": [1, 2, 3, 4, 5], "text": TEXTS}
    )
    frame.to_parquet(src, index=False)
    out = tmp_path / "out.parquet"
    code, _, err = run_main(
        "outliers",
        src,
        "--n-neighbors",
        "2",
        "-o",
        out,
        *remote(server, tmp_path),
        capsys=capsys,
    )
    assert code == 0, err
    back = pd.read_parquet(out)
    assert back["code"].tolist() == ["007", "010", "1", "2", "3"]
    assert back["n"].dtype == "int64" and back["code"].dtype.kind in "OT"


# -- 21: odd input files ---------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-8-sig", "utf-32"])
def test_csv_in_other_unicode_encodings_is_read_right(
    encoding, server, tmp_path, capsys
):
    path = tmp_path / "wide.csv"
    texts = ["café au lait", "naïve résumé", "日本語のテキスト", "plain text", "more"]
    pd.DataFrame({"id": range(5), "text": texts}).to_csv(
        path, index=False, encoding=encoding
    )
    out = tmp_path / "out.jsonl"
    code, _, err = run_main(
        "outliers",
        path,
        "--n-neighbors",
        "2",
        "-o",
        out,
        *remote(server, tmp_path),
        capsys=capsys,
    )
    assert code == 0, err
    back = pd.read_json(out, lines=True, dtype=False)
    assert back["text"].tolist() == texts


def test_parquet_list_column_is_refused(server, tmp_path, capsys):
    path = tmp_path / "lists.parquet"
    pd.DataFrame({"text": [["a", "b"], ["c"], ["d", "e"]]}).to_parquet(path)
    code, _, err = run_main("outliers", path, *remote(server, tmp_path), capsys=capsys)
    assert code == 2
    assert "holds lists, not texts (row 0" in err


def test_broken_json_lines_line_is_named(server, tmp_path, capsys):
    path = tmp_path / "docs.jsonl"
    path.write_text(
        '{"text": "one"}\n{"text": "two"}\n{"text": "three\n{"text": "four"}\n'
    )
    code, _, err = run_main("outliers", path, *remote(server, tmp_path), capsys=capsys)
    assert code == 2 and "line 3 of" in err and "not valid JSON" in err


def test_json_lines_line_that_is_not_an_object_is_named(server, tmp_path, capsys):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "one"}\n\n["two"]\n')
    code, _, err = run_main("outliers", path, *remote(server, tmp_path), capsys=capsys)
    assert code == 2 and "line 3 of" in err and "not an object" in err
