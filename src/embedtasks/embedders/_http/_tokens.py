"""Token counting for request packing: exact (tiktoken, offline) or a safe bound.

:func:`token_counter` returns the best offline :class:`TokenCounter` for a model:
tiktoken when its BPE file is already cached locally (it never downloads), else
the UTF-8 byte count, an upper bound for OpenAI's byte-level BPE tokenizers.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["BYTES_PER_TOKEN", "TokenCounter", "token_counter"]

#: Typical UTF-8 bytes per token of OpenAI's BPE tokenizers on prose; used to
#: cut over-long texts when only the byte bound is available.
BYTES_PER_TOKEN = 4


class TokenCounter:
    """Counts tokens and splits over-long texts, exactly or by a safe bound.

    The fallback bound counts UTF-8 bytes. Every token of a byte-level BPE (the
    ``cl100k_base`` / ``o200k_base`` family used by OpenAI's embedding models)
    covers at least one byte, so ``n_tokens <= n_bytes`` always holds: batches
    packed with it never exceed a token limit, at the cost of more, smaller
    requests (English averages ~4 bytes per token).

    Parameters
    ----------
    encode : callable, optional
        ``str -> list[int]`` token ids (e.g. a tiktoken encoding's
        ``encode_ordinary``); ``None`` uses the byte bound.
    decode : callable, optional
        ``list[int] -> str``, needed with ``encode`` to split long texts.
    name : str, default="utf8-bytes"
        Shown in messages.

    Examples
    --------
    >>> counter = TokenCounter()
    >>> counter.count(["hello", "héllo"]).tolist()  # bytes: a safe upper bound
    [5, 6]
    >>> [piece for piece, _ in counter.split("abcdefg", 3)]
    ['abc', 'def', 'g']
    """

    def __init__(
        self,
        encode: Callable[[str], Sequence[int]] | None = None,
        decode: Callable[[Sequence[int]], str] | None = None,
        *,
        name: str = "utf8-bytes",
    ) -> None:
        self.encode = encode
        self.decode = decode
        self.name = name

    @property
    def exact(self) -> bool:
        """Whether counts come from the real tokenizer (not the byte bound)."""
        return self.encode is not None

    def __repr__(self) -> str:
        return f"TokenCounter({self.name!r})"

    def count(self, texts: Sequence[str]) -> npt.NDArray[np.int64]:
        """Tokens (or the byte bound) of each text."""
        if self.encode is not None:
            encode = self.encode
            return np.fromiter(
                (len(encode(t)) for t in texts), dtype=np.int64, count=len(texts)
            )
        return np.fromiter(
            (len(t) if t.isascii() else len(t.encode("utf-8")) for t in texts),
            dtype=np.int64,
            count=len(texts),
        )

    def split(self, text: str, limit: int) -> list[tuple[str, int]]:
        """Cut ``text`` into consecutive pieces of at most ``limit`` tokens.

        Returns ``(piece, n_tokens)`` pairs; the pieces joined give back the text
        (up to characters cut at a token boundary, with a real tokenizer).
        """
        if self.encode is not None and self.decode is not None:
            ids = list(self.encode(text))
            # Re-encoding a decoded window can differ slightly at its edges.
            step = max(1, limit - 16) if limit > 64 else limit
            return [
                (self.decode(ids[s : s + step]), len(ids[s : s + step]))
                for s in range(0, len(ids), step)
            ]
        data = text.encode("utf-8")
        pieces = []
        start = 0
        while start < len(data):
            end = min(start + limit, len(data))
            while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
                end -= 1  # do not cut a multi-byte character
            if end == start:  # limit below one character: take it whole
                end = start + 1
                while end < len(data) and (data[end] & 0xC0) == 0x80:
                    end += 1
            pieces.append((data[start:end].decode("utf-8"), end - start))
            start = end
        return pieces


_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def _tiktoken_file(encoding_name: str) -> str | None:
    """Path where tiktoken caches an encoding's BPE file, or None if disabled."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return None
    url = _TIKTOKEN_URL.format(encoding_name)
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())


@functools.lru_cache(maxsize=16)
def token_counter(model: str) -> TokenCounter:
    """The best offline :class:`TokenCounter` for ``model``.

    Uses tiktoken when it knows the model and its BPE file is already in
    tiktoken's cache (``$TIKTOKEN_CACHE_DIR``); it never downloads. Otherwise it
    returns the byte bound, which is always >= the real count for OpenAI's
    byte-level BPE tokenizers.

    Examples
    --------
    >>> token_counter("some-local-model").exact  # unknown to tiktoken
    False
    """
    try:
        import tiktoken

        name = tiktoken.encoding_name_for_model(model)
    except (ImportError, KeyError):
        return TokenCounter()
    path = _tiktoken_file(name)
    if path is None or not os.path.exists(path):
        return TokenCounter()
    try:
        enc = tiktoken.get_encoding(name)
    except Exception:  # a corrupt cache file would trigger a download: give up
        return TokenCounter()
    return TokenCounter(enc.encode_ordinary, enc.decode, name=name)
