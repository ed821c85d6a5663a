"""Terminal tables keep their numbers: at 80 columns every command shows its
score, probability and count columns (text columns shrink first), and the
machine formats print every row whatever --top says."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from embedtasks.cli import main
from embedtasks.cli._terminal import render

LONG = [
    "an unusually long paragraph about the weather in the mountains " * 4,
    "日本語のテキストと長い説明がここにあります " * 3,
    "a short one",
    "stocks fell after the earnings report and the bank cut rates again " * 3,
    "a kitten chased a ball of wool across the floor of the kitchen " * 3,
    "interest rates rose again this quarter, the third time in a row " * 3,
    "the cat sat on the mat and looked at the long-haired dog outside " * 3,
    "fees for sending money to another country are listed on this page " * 3,
]


@pytest.fixture
def odd(tmp_path: Path) -> Path:
    path = tmp_path / "odd.csv"
    ids = [f"a-rather-long-identifier-{i:04d}" for i in range(len(LONG))]
    frame = pd.DataFrame({"id": ids, "text": LONG, "group": list("aabbccdd")})
    frame.to_csv(path, index=False)
    return path


#: Tiny files: the zero-shot probabilities are a guess, as the CLI warns.
pytestmark = pytest.mark.filterwarnings(
    "ignore:NearestLabelClassifier. predict_proba is not calibrated"
)


def _run(capsys, monkeypatch, *args: object) -> tuple[int, str, str]:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


#: Each command and the numbers its table must keep at 80 columns.
COMMANDS = [
    (["search", "--query", "weather", "--query", "日本語", "-k", "3"], ["score"]),
    (["recommend", "--row", "0", "-k", "4"], ["score"]),
    (["classify", "--labels", "weather,finance,pets"], ["probability"]),
    (["outliers", "--n-neighbors", "2"], ["outlier_score"]),
    (
        ["cluster", "--n-clusters", "2", "--reduction", "none"],
        ["size", "share", "mean_probability"],
    ),
    (
        ["diversity", "--group-column", "group"],
        ["n_samples", "mean_similarity", "n_duplicate_pairs", "vendi_score"],
    ),
]


@pytest.mark.parametrize(("command", "numbers"), COMMANDS, ids=lambda c: c[0])
def test_every_table_keeps_its_numbers_at_80_columns(
    command, numbers, fake_server, odd, tmp_path, capsys, monkeypatch
):
    server = fake_server(dim=16)
    code, out, err = _run(
        capsys, monkeypatch, command[0], odd, *command[1:], "--id-column", "id",
        "--base-url", server.url, "--model", "fake", "--cache-dir", tmp_path / "c",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80, max(lines, key=len)
    first = {"rank", "index", "cluster", "group"}  # what each table starts with
    headers = [
        line.split() for line in lines if line.split()[:1] in ([f] for f in first)
    ]
    assert headers, out
    for name in numbers:  # a long header over short numbers may be cut: "n_dup…"
        for header in headers:
            assert any(
                h == name or (h.endswith("…") and name.startswith(h[:-1]))
                for h in header
            ), (name, out)
    assert "not shown: score" not in out and "probability," not in out


def test_text_columns_shrink_before_numbers_are_left_out():
    frame = pd.DataFrame(
        {
            "index": [0, 1],
            "id": ["identifier-" * 4, "x"],
            "label": ["a-long-label-name-here", "b"],
            "probability": [0.91234, 0.5],
            "count": [12345, 7],
            "text": ["a very long text " * 10, "short"],
        }
    )
    lines = render(frame, total_width=50, text_columns=["text"])
    assert max(map(len, lines)) <= 50
    header = lines[0].split()
    assert {"index", "probability", "count"} <= set(header)
    assert "0.9123" in lines[1] and "12345" in lines[1]


def test_long_headers_over_short_numbers_are_cut_not_the_numbers():
    frame = pd.DataFrame(
        {f"a_rather_long_statistic_{i}": [0.123456, 0.5] for i in range(5)}
    )
    lines = render(frame, total_width=60, priority=list(frame.columns))
    assert max(map(len, lines)) <= 60
    assert lines[1].split() == ["0.1235"] * 5  # every number, whole


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
@pytest.mark.parametrize("command", [["outliers"], ["classify", "--labels", "a,b"]])
def test_machine_formats_print_every_row(
    fmt, command, fake_server, tmp_path, capsys, monkeypatch
):
    server = fake_server(dim=16)
    path = tmp_path / "many.csv"
    pd.DataFrame({"text": [f"text number {i}" for i in range(25)]}).to_csv(path)
    code, out, err = _run(
        capsys, monkeypatch, command[0], path, *command[1:], "--format", fmt,
        "--base-url", server.url, "--model", "fake", "--cache-dir", tmp_path / "c",
    )  # fmt: skip
    assert code == 0, err
    if fmt == "csv":
        rows = pd.read_csv(io.StringIO(out))
    elif fmt == "jsonl":
        rows = pd.DataFrame([json.loads(line) for line in out.splitlines()])
    else:
        rows = pd.DataFrame(json.loads(out))
    assert len(rows) == 25  # the --top 10 default shortens the terminal table only
    assert sorted(rows["index"]) == list(range(25))
