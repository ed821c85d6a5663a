"""Data files in and out: CSV, TSV, Parquet, JSON Lines, JSON, text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedtasks.cli._args import CLIError

_READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".txt": "txt",
}


_COMPRESSED = {".gz", ".bz2", ".zip", ".xz", ".zst"}


# -- files ---------------------------------------------------------------------------
def _kind(path: Path, what: str) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes.pop()
    kind = _READERS.get(suffixes[-1] if suffixes else "")
    if kind is None or (what == "output file" and kind == "txt"):
        known = sorted(k for k in _READERS if what != "output file" or k != ".txt")
        raise CLIError(
            f"cannot tell the format of {what} '{path}' from its extension "
            f"{path.suffix!r}; use one of {', '.join(known)}"
        )
    return kind


def read_table(
    path: str | Path,
    *,
    text_columns: Sequence[str] = (),
    note: Callable[[str], None] | None = None,
) -> Any:
    """Read a data file into a pandas DataFrame, texts kept as they are.

    Cells are never guessed to be missing: "NA", "null" or "None" stay texts; in a
    CSV/TSV only an empty cell is. ``text_columns`` are read as strings (ids like
    "007" keep their zeros). A ``.txt`` file is one text per non-blank line, in a
    column ``text``. CSV files that are not UTF-8 are read as cp1252 (``note``
    says so); a ``;`` or ``|`` separated ``.csv`` is recognised.
    """
    import pandas as pd

    path = Path(path)
    kind = _kind(path, "input file")
    if not path.is_file():
        raise CLIError(f"input file '{path}' not found")
    try:
        if kind == "parquet":
            _need_parquet()
            return pd.read_parquet(path)
        if kind == "txt":
            lines = path.read_text("utf-8-sig", errors="replace").splitlines()
            return pd.DataFrame({"text": [t for t in lines if t.strip()]})
        if kind in {"json", "jsonl"}:
            with open(path, "rb") as f:
                array = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")
            if not array:
                return _read_jsonl(path)
            return pd.read_json(path, dtype=False, precise_float=True)
        return _read_csv(path, kind, text_columns, note)
    except CLIError:
        raise
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise CLIError(f"could not read '{path}' as {kind}: {reason}") from exc


def _read_csv(
    path: Path,
    kind: str,
    text_columns: Sequence[str],
    note: Callable[[str], None] | None,
) -> Any:
    import pandas as pd

    # Every cell is read as the text it is ("00001" stays "00001", 1.50 stays
    # 1.50), so -o copies keep the user's other columns exactly.
    options: dict[str, Any] = {
        "keep_default_na": False,
        "na_values": [""],
        "dtype": str,
    }
    wide = _wide_encoding(path)
    for encoding in (wide,) if wide else ("utf-8-sig", "cp1252"):
        try:
            sep = "\t" if kind == "tsv" else _separator(path, encoding)
            return pd.read_csv(path, sep=sep, encoding=encoding, **options)
        except UnicodeDecodeError:
            if note is not None:
                note(f"'{path}' is not UTF-8; reading it as cp1252")
        except pd.errors.EmptyDataError as exc:
            raise CLIError(f"input file '{path}' is empty") from exc
    return pd.read_csv(  # pragma: no cover - cp1252 decodes nearly every byte
        path, sep=_separator(path, "latin-1"), encoding="latin-1", **options
    )


def _wide_encoding(path: Path) -> str | None:
    """``utf-16``/``utf-32`` when the file says so (BOM) or looks so (NULs)."""
    if path.suffix.lower() in _COMPRESSED:
        return None
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if len(head) >= 4 and head.count(b"\x00") >= len(head) // 3:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        return "utf-16-le" if odd > even else "utf-16-be"
    return None


def _read_jsonl(path: Path) -> Any:
    """JSON Lines, one object per line; a broken line is named by its number."""
    import json

    import pandas as pd

    records = []
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise CLIError(
                    f"line {number} of '{path}' is not valid JSON ({exc.args[0]}); "
                    "fix or remove that line (JSON Lines holds one object per line)"
                ) from None
            if not isinstance(record, dict):
                raise CLIError(
                    f"line {number} of '{path}' is a JSON {type(record).__name__}, "
                    'not an object like {"text": "..."}; fix or remove it'
                )
            records.append(record)
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def _separator(path: Path, encoding: str) -> str:
    """',' unless the header line has none and holds ';', tab or '|'."""
    if path.suffix.lower() in _COMPRESSED:
        return ","
    with open(path, encoding=encoding, newline="") as f:
        header = f.readline()
    if "," in header:
        return ","
    counts = {sep: header.count(sep) for sep in (";", "\t", "|")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def write_table(frame: Any, path: str | Path) -> None:
    """Write a DataFrame as CSV/TSV/Parquet/JSON Lines/JSON, by extension."""
    path = Path(path)
    kind = _kind(path, "output file")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        _need_parquet()
        frame.to_parquet(path, index=False)
    elif kind in {"jsonl", "json"}:
        frame.to_json(path, orient="records", lines=kind == "jsonl", force_ascii=False)
    else:
        _flat(frame).to_csv(path, sep="\t" if kind == "tsv" else ",", index=False)


def _flat(frame: Any) -> Any:
    """Lists (keywords, representatives) joined with '; ' for CSV cells."""
    out = frame.copy()
    for column in out.columns:
        if out[column].map(lambda v: isinstance(v, list | tuple)).any():
            out[column] = out[column].map(
                lambda v: "; ".join(map(str, v)) if isinstance(v, list | tuple) else v
            )
    return out


def _need_parquet() -> None:
    from embedtasks._optional import import_optional

    import_optional("pyarrow", extra="parquet", purpose="Parquet files")


def _column(frame: Any, name: str, path: str, *, option: str = "--column") -> Any:
    if name not in frame.columns:
        names = list(frame.columns)
        columns = ", ".join(map(repr, names[:30]))
        if len(names) > 30:
            columns += f" and {len(names) - 30} more"
        raise CLIError(
            f"column {name!r} not found in '{path}'; it has {columns}. "
            f"Choose one with {option}"
        )
    return frame[name]


@dataclass
class Rows:
    """The texts of one column, and which rows of the file they come from."""

    texts: list[str]
    kept: Any  # ndarray of int: file row of each text
    n_rows: int  # rows in the file

    def spread(self, values: Any, dtype: str | None = None) -> Any:
        """A column for every row of the file: ``values`` at the kept rows, NA
        (empty) at the skipped ones."""
        import pandas as pd

        series = pd.Series(values, index=self.kept)
        if dtype is not None:
            series = series.astype(dtype)
        return series.reindex(range(self.n_rows)).array
