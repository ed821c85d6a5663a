"""LocalEmbedder against sentence-transformers itself: same vectors, same speed.

Embeds Banking77 texts (real customer queries) and, with ``--docstrings``, the main
job's docstring corpus (longer texts), with

- sentence-transformers' own ``SentenceTransformer.encode`` at each batch size in
  ``--batch-sizes`` (the reference: its best batch size), and
- ``LocalEmbedder(cache_dir=None)`` at its default settings (no cache: every text
  is embedded),

in one process, alternating, best of ``--repeats``. Prints seconds, texts/s, our
time over the reference's best (the bar: <= 1.10), and how close the vectors are
(min cosine, the bar: >= 0.9999; float32; unit norm).

Run: ``python benchmarks/bench_local.py`` (``--n 1000 --repeats 5`` by default;
``--docstrings`` adds the main job's corpus).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"


def _load_texts(data: Path, n: int) -> list[str]:
    with open(data / "test.csv", newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)][:n]


def _best(fn, repeats: int) -> tuple[float, np.ndarray]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(name: str, texts: list[str], batch_sizes: list[int], repeats: int) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from embedtasks import LocalEmbedder
    from embedtasks._local import load_model, resolve_model_path

    model = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    load_model("all-MiniLM-L6-v2", "cpu")  # load outside the timings
    ours = LocalEmbedder(device="cpu", cache_dir=None, progress=False)
    n_chars = sum(map(len, texts)) / len(texts)
    print(
        f"\n== {name}: {len(texts)} texts ({len(set(texts))} distinct), "
        f"mean {n_chars:.0f} chars; torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}"
    )
    ours.fit_transform(texts[:64])  # warm-up, both sides
    model.encode(texts[:64], batch_size=64)

    ref_times: dict[int, float] = {}
    ref_vectors = None
    our_times = []
    runs: list[int | None] = [*batch_sizes, None]  # None: LocalEmbedder
    for r in range(repeats):  # rotate the order, so load drift hits every variant
        for bs in runs[r % len(runs) :] + runs[: r % len(runs)]:
            if bs is None:
                t, X = _best(lambda: ours.fit_transform(texts), 1)
                our_times.append(t)
                continue
            t, vec = _best(
                lambda bs=bs: model.encode(
                    texts, batch_size=bs, normalize_embeddings=True
                ),
                1,
            )
            ref_times[bs] = min(ref_times.get(bs, np.inf), t)
            ref_vectors = vec

    print(f"{'':34s} {'seconds':>8s} {'texts/s':>8s}")
    for bs, t in ref_times.items():
        label = f"sentence-transformers bs={bs}"
        print(f"{label:34s} {t:8.2f} {len(texts) / t:8.1f}")
    best_bs = min(ref_times, key=ref_times.get)
    ours_t = min(our_times)
    print(f"{'LocalEmbedder (defaults)':34s} {ours_t:8.2f} {len(texts) / ours_t:8.1f}")
    ratio = ours_t / ref_times[best_bs]
    print(
        f"ratio ours / best reference (bs={best_bs}): {ratio:.3f} "
        f"({'PASS' if ratio <= 1.10 else 'FAIL'}: bar <= 1.10)"
    )
    cos = np.einsum("ij,ij->i", X.astype(np.float64), ref_vectors)
    norms = np.linalg.norm(X.astype(np.float64), axis=1)
    print(
        f"vectors: dtype {X.dtype}, shape {X.shape}, min cosine to "
        f"sentence-transformers {cos.min():.7f} "
        f"({'PASS' if cos.min() >= 0.9999 else 'FAIL'}: bar >= 0.9999), "
        f"|norm - 1| max {np.abs(norms - 1).max():.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", default="16,32,64,128")
    parser.add_argument(
        "--docstrings", action="store_true", help="also the main job's corpus"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    texts = _load_texts(args.data, args.n)
    run("Banking77 test queries", texts, sizes, args.repeats)
    if args.docstrings:
        from embedtasks.demo import build_corpus

        corpus = build_corpus(n_texts=args.n)
        run("docstrings (main job corpus)", list(corpus["text"]), sizes, args.repeats)
    stored = np.load(args.data / "test_minilm.npy", mmap_mode="r")[: len(texts)]
    from embedtasks import LocalEmbedder

    X = LocalEmbedder(cache_dir=None, progress=False).fit_transform(texts)
    cos = np.einsum("ij,ij->i", X.astype(np.float64), stored)
    print(f"\nmin cosine to the dataset's stored MiniLM vectors: {cos.min():.7f}")


if __name__ == "__main__":
    main()
