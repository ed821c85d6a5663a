"""Where the corpus rows come from: an array in memory, a file mapped in place, int8.

The kernel reads a corpus tile by tile (:meth:`tile`) and gathers the few rows it
rescores (:meth:`rows`). A memory-mapped float32 file is read in place: after each
tile its pages are handed back to the operating system (``MADV_DONTNEED``), so a
search holds one tile, not the file, in memory. An int8 corpus is dequantised
tile by tile into float32 (element-wise, so deterministically).
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks._kernel._exact import _squared_norms, chunk_rows


def find_mmap(X: Any) -> mmap.mmap | None:
    """The ``mmap`` under ``X`` (a ``np.memmap`` or a view of one), if any."""
    base = X
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        base = getattr(base, "base", None)
    return None


def mapped_file(X: Any) -> tuple[str, int, tuple[int, ...]] | None:
    """(file name, byte offset, shape) of a C-contiguous array mapped from a file."""
    base = X
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    if base is None or getattr(base, "filename", None) is None:
        return None
    if not (isinstance(X, np.ndarray) and X.flags.c_contiguous):
        return None
    offset = int(base.offset) + (X.ctypes.data - base.ctypes.data)
    return str(base.filename), offset, tuple(X.shape)


class Dense:
    """Float32 rows in memory or memory-mapped (read in place, pages released)."""

    kind = "float32"

    def __init__(self, C: npt.NDArray[np.float32]) -> None:
        self.C = C
        self.n, self.d = C.shape
        self._mm = find_mmap(C)
        self._base = 0
        if self._mm is not None:
            view = np.frombuffer(self._mm, dtype=np.uint8)
            self._base = view.ctypes.data
            del view

    @property
    def mapped(self) -> bool:
        return self._mm is not None

    def tile(
        self, c0: int, c1: int, out: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32]:
        return self.C[c0:c1]

    def rows(self, idx: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        return self.C[idx]

    def rows_slice(self, c0: int, c1: int) -> Dense:
        """Rows [c0, c1) as a corpus of their own (a view, no copy)."""
        return Dense(self.C[c0:c1])

    def done(self, c0: int, c1: int) -> None:
        """Hand the pages of rows [c0, c1) of a mapped file back to the OS."""
        if self._mm is None or c1 <= c0:
            return
        row = self.C.strides[0]
        start = self.C.ctypes.data + c0 * row - self._base
        end = self.C.ctypes.data + c1 * row - self._base
        page = mmap.PAGESIZE
        a, b = -(-start // page) * page, end // page * page
        if b > a:
            self._mm.madvise(mmap.MADV_DONTNEED, a, b - a)


class Quantized:
    """Scalar-quantised int8 rows: ``x ~ zero + scale * code`` per dimension."""

    kind = "int8"

    def __init__(
        self,
        codes: npt.NDArray[np.int8],
        scale: npt.ArrayLike,
        zero: npt.ArrayLike,
    ) -> None:
        self.codes = codes
        self.scale = np.asarray(scale, dtype=np.float32)
        self.zero = np.asarray(zero, dtype=np.float32)
        self.n, self.d = codes.shape
        self.mapped = False

    def tile(
        self, c0: int, c1: int, out: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32]:
        block = self.codes[c0:c1]
        if out is None or out.shape[0] < block.shape[0]:
            out = np.empty(block.shape, dtype=np.float32)
        T = out[: block.shape[0]]
        np.multiply(block, self.scale, out=T, dtype=np.float32)
        T += self.zero
        return T

    def rows(self, idx: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        return self.codes[idx].astype(np.float32) * self.scale + self.zero

    def rows_slice(self, c0: int, c1: int) -> Quantized:
        """Rows [c0, c1) as a corpus of their own (a view, no copy)."""
        return Quantized(self.codes[c0:c1], self.scale, self.zero)

    def done(self, c0: int, c1: int) -> None:
        return None


def as_corpus(corpus: Any) -> Dense | Quantized:
    """The corpus as a tile source (arrays become :class:`Dense`, float32 as is)."""
    if isinstance(corpus, Dense | Quantized):
        return corpus
    C = np.asarray(corpus)
    if C.dtype != np.float32 or not C.flags.c_contiguous:
        C = np.ascontiguousarray(C, dtype=np.float32)
    if C.ndim != 2:
        raise ValueError(f"The corpus must be a 2-D array, got shape {C.shape}.")
    return Dense(C)


def stream_norms(corpus: Dense | Quantized) -> npt.NDArray[np.float64]:
    """Canonical row norms, computed tile by tile (a mapped file stays unmapped)."""
    out = np.empty(corpus.n, dtype=np.float64)
    step = chunk_rows(corpus.d)
    buffer = None
    for c0 in range(0, corpus.n, step):
        c1 = min(c0 + step, corpus.n)
        T = corpus.tile(c0, c1, buffer)
        out[c0:c1] = np.sqrt(_squared_norms(np.ascontiguousarray(T)))
        corpus.done(c0, c1)
    return out


def quantize(
    X: Any,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Scalar-quantise rows to int8, per dimension over its observed range.

    Returns ``(codes, scale, zero)`` with ``x ~ zero + scale * code`` and codes in
    [-127, 127]. Two streaming passes (range, then codes): a mapped file is read
    in place.

    Examples
    --------
    >>> codes, scale, zero = quantize([[1.0, -1.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> codes
    array([[ 127, -127],
           [   0,  127],
           [-127,    0]], dtype=int8)
    """
    src = as_corpus(X)
    chunk = chunk_rows(src.d)
    lo = np.full(src.d, np.inf, dtype=np.float32)
    hi = np.full(src.d, -np.inf, dtype=np.float32)
    for c0 in range(0, src.n, chunk):
        T = src.tile(c0, min(c0 + chunk, src.n))
        np.minimum(lo, T.min(axis=0), out=lo)
        np.maximum(hi, T.max(axis=0), out=hi)
        src.done(c0, min(c0 + chunk, src.n))
    zero = ((hi + lo) / 2).astype(np.float32)
    scale = ((hi - lo) / 254).astype(np.float32)
    scale[scale <= 0] = 1.0
    codes = np.empty((src.n, src.d), dtype=np.int8)
    for c0 in range(0, src.n, chunk):
        c1 = min(c0 + chunk, src.n)
        T = (src.tile(c0, c1) - zero) / scale
        np.clip(np.rint(T), -127, 127, out=T)
        codes[c0:c1] = T
        src.done(c0, c1)
    return codes, scale, zero
