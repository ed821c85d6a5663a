"""Warm-cache ``OpenAIEmbedder.transform`` versus ``np.load`` of the same matrix.

Fills a fresh SQLite cache with ``--n`` unit float32 vectors of width ``--dim``
(100,000 x 1,536 by default, 614 MB) under the keys ``OpenAIEmbedder`` uses,
saves the same matrix with ``np.save``, then times (median of ``--repeat``):

* ``np.load`` of the ``.npy`` file (the floor: reading the bytes once);
* ``OpenAIEmbedder(...).transform(texts)`` served entirely from the cache
  (validation, de-duplication, hashing, SQLite lookups and float32 decoding),
  with a transport that fails the run if any request is made.

The bar: transform takes at most 2x the time of ``np.load``.

Run: ``.venv/bin/python benchmarks/bench_cache.py`` (about a minute; needs
~2 GB of free disk in ``--tmp`` and ~2 GB of memory).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from embedtasks import OpenAIEmbedder
from embedtasks.embedders._cache import EmbeddingCache, make_keys


def refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError("warm-cache transform made a request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp_path = Path(tmp)
        texts = [f"document number {i} about topic {i % 97}" for i in range(args.n)]
        emb = OpenAIEmbedder(
            cache_dir=tmp_path / "cache",
            transport=httpx.MockTransport(refuse),
            progress=False,
        )
        rng = np.random.default_rng(0)
        keys = make_keys(emb._backend().identity, texts)
        start = time.perf_counter()
        with EmbeddingCache(tmp_path / "cache") as cache:
            for s in range(0, args.n, 10_000):
                block = rng.standard_normal((len(keys[s : s + 10_000]), args.dim))
                block /= np.linalg.norm(block, axis=1, keepdims=True)
                cache.put_many(keys[s : s + 10_000], block.astype(np.float32))
                if s == 0:
                    first = block.astype(np.float32)
            cache.record_identity_dim(emb._backend().identity, args.dim)
        fill = time.perf_counter() - start
        matrix = emb.fit_transform(texts)  # also warms the OS page cache
        np.testing.assert_array_equal(matrix[: len(first)], first)
        np.save(tmp_path / "matrix.npy", matrix)
        del matrix
        print(
            f"{args.n} x {args.dim} float32 ({args.n * args.dim * 4 / 1e6:.0f} MB); "
            f"cache filled in {fill:.1f} s"
        )

        load_times, transform_times = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            loaded = np.load(tmp_path / "matrix.npy")
            load_times.append(time.perf_counter() - start)
            del loaded
            start = time.perf_counter()
            out = emb.transform(texts)
            transform_times.append(time.perf_counter() - start)
            assert emb.usage_["cache_hits"] == args.n and out.dtype == np.float32
            del out
        load_s = statistics.median(load_times)
        transform_s = statistics.median(transform_times)
        print(f"np.load                      {load_s:7.3f} s")
        print(f"OpenAIEmbedder.transform     {transform_s:7.3f} s (warm cache)")
        print(f"ratio transform / np.load    {transform_s / load_s:7.2f}  (bar: <= 2)")


if __name__ == "__main__":
    main()
