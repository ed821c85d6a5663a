"""Vectors as bytes: little-endian float32, 4 bytes per value (the cache's format)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_BLOB_DTYPE = np.dtype("<f4")


def to_bytes(vector: npt.ArrayLike) -> bytes:
    """Serialise one vector as little-endian float32 bytes (4 bytes per value).

    Examples
    --------
    >>> blob = to_bytes([1.0, -0.5])
    >>> len(blob), from_bytes(blob)
    (8, array([ 1. , -0.5], dtype=float32))
    """
    array = np.asarray(vector)
    if array.ndim != 1:
        raise ValueError(f"to_bytes expects one 1-D vector, got shape {array.shape}.")
    return array.astype(_BLOB_DTYPE, copy=False).tobytes()


def from_bytes(blob: bytes, dim: int | None = None) -> npt.NDArray[np.float32]:
    """Read a vector written by :func:`to_bytes` (native float32, writeable copy).

    Raises ``ValueError`` if the blob is not a whole number of float32 values, or
    holds a different number of values than ``dim``.
    """
    if len(blob) % 4:
        raise ValueError(
            f"A float32 blob must be a multiple of 4 bytes long, got {len(blob)}."
        )
    if dim is not None and len(blob) != 4 * dim:
        raise ValueError(
            f"Expected a blob of {dim} float32 values ({4 * dim} bytes), got "
            f"{len(blob) // 4} values: was it written by another model?"
        )
    return np.frombuffer(blob, dtype=_BLOB_DTYPE).astype(np.float32)


def matrix_from_bytes(blobs: Sequence[bytes], dim: int) -> npt.NDArray[np.float32]:
    """Stack many :func:`to_bytes` blobs of ``dim`` values into an (n, dim) matrix."""
    data = b"".join(blobs)
    if len(data) != 4 * dim * len(blobs):
        bad = next(i for i, b in enumerate(blobs) if len(b) != 4 * dim)
        raise ValueError(
            f"Blob {bad} holds {len(blobs[bad]) / 4:g} float32 values, expected {dim}."
        )
    return np.frombuffer(data, dtype=_BLOB_DTYPE).astype(np.float32).reshape(-1, dim)
