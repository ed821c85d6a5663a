"""LocalEmbedder (torch-free default backend) against sentence-transformers itself.

One run prints, with the same number of CPU threads on both sides:

1. **paragraphs**: Brown corpus chunks (``shared/data/brown/chunks.csv``, ~110
   tokens each; a seeded sample of ``--paragraphs``), and
2. **one-line queries**: Banking77 test texts (``--queries``),

each embedded by ``SentenceTransformer.encode`` (batch size ``--ref-batch-size``,
its default 32) and by ``LocalEmbedder(cache_dir=None)`` at its defaults,
alternating, ``--repeats`` times; then the throughput ratio (reference seconds /
ours: above 1 means we are faster; the bar is >= 1.0) on the best and the median
run, and the minimum cosine between the two sets of vectors (bar >= 0.9999).

3. **cold start**: a fresh Python process that embeds one new text (no cache),
   run twice (the second run is the figure: files in the page cache), for
   LocalEmbedder and for sentence-transformers; plus whether torch was imported.

Run: ``python benchmarks/bench_local.py`` (``--repeats 3`` by default). The machine
is shared: compare the ratios, not the seconds; re-run if they disagree.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

COLD_OURS = """
import sys, time
t0 = time.perf_counter()
from embedtasks import LocalEmbedder
t1 = time.perf_counter()
LocalEmbedder(cache_dir=None, progress=False).fit_transform([{text!r}])
t2 = time.perf_counter()
print(f"{{t1 - t0:.2f}} {{t2 - t1:.2f}} {{'torch' in sys.modules}}")
"""
COLD_REF = """
import sys, time
t0 = time.perf_counter()
from sentence_transformers import SentenceTransformer
t1 = time.perf_counter()
SentenceTransformer({path!r}, device="cpu").encode([{text!r}])
t2 = time.perf_counter()
print(f"{{t1 - t0:.2f}} {{t2 - t1:.2f}} {{'torch' in sys.modules}}")
"""


def _column(path: Path, name: str = "text") -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row[name] for row in csv.DictReader(f)]


def compare(name: str, texts: list[str], repeats: int, ref_batch: int) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from embedtasks import LocalEmbedder, _bert, _local

    threads = _bert.n_threads()
    torch.set_num_threads(threads)
    path = _local.resolve_model_path("all-MiniLM-L6-v2")
    reference = SentenceTransformer(path, device="cpu")
    ours = LocalEmbedder(cache_dir=None, progress=False)
    ours.fit_transform(texts[:32])  # load and warm up, both sides
    reference.encode(texts[:32], batch_size=ref_batch)
    tokens = ours.fit_transform(texts) is not None and ours.usage_["tokens"]
    print(
        f"\n== {name}: {len(texts)} texts, mean {tokens / len(texts):.0f} tokens; "
        f"{threads} threads each (torch {torch.get_num_threads()}, "
        f"ONNX Runtime {threads}); {os.cpu_count()} CPUs"
    )
    ref_t: list[float] = []
    our_t: list[float] = []
    ref_cpu: list[float] = []
    our_cpu: list[float] = []
    X = R = None
    for r in range(repeats):  # alternate, and swap who goes first each round
        for side in ("ours", "ref") if r % 2 == 0 else ("ref", "ours"):
            t0, c0 = time.perf_counter(), time.process_time()
            if side == "ours":
                X = ours.fit_transform(texts)
                our_t.append(time.perf_counter() - t0)
                our_cpu.append(time.process_time() - c0)
            else:
                R = reference.encode(
                    texts, batch_size=ref_batch, normalize_embeddings=True
                )
                ref_t.append(time.perf_counter() - t0)
                ref_cpu.append(time.process_time() - c0)
    assert X is not None and R is not None
    for label, times, cpu in (
        ("sentence-transformers", ref_t, ref_cpu),
        ("LocalEmbedder", our_t, our_cpu),
    ):
        runs = " ".join(f"{t:.2f}" for t in times)
        best = min(times)
        print(
            f"{label:22s} best {best:7.2f} s {len(texts) / best:7.1f} texts/s, "
            f"{len(texts) / min(cpu):6.1f} texts/CPU-s [{runs}]"
        )
    best_ratio = min(ref_t) / min(our_t)
    median_ratio = float(np.median(ref_t) / np.median(our_t))
    cpu_ratio = min(ref_cpu) / min(our_cpu)
    verdict = "PASS" if best_ratio >= 1.0 else "FAIL"
    print(
        f"throughput ratio ours/reference: best {best_ratio:.2f}x, median "
        f"{median_ratio:.2f}x ({verdict}: bar >= 1.0x, moonshot 1.5x); per "
        f"CPU-second {cpu_ratio:.2f}x"
    )
    cos = np.einsum("ij,ij->i", X.astype(np.float64), R)
    print(
        f"min cosine to sentence-transformers {cos.min():.7f} "
        f"({'PASS' if cos.min() >= 0.9999 else 'FAIL'}: bar >= 0.9999); "
        f"truncated {ours.usage_['truncated']} of {len(texts)}"
    )


def cold_start() -> None:
    from embedtasks.embedders._onnx import _runtime as _local

    path = _local.resolve_model_path("all-MiniLM-L6-v2")
    print("\n== cold start: a fresh process embeds one new text (second run counts)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for label, template in (
        ("LocalEmbedder", COLD_OURS),
        ("sentence-transformers", COLD_REF),
    ):
        for attempt in (1, 2):
            code = template.format(
                text=f"a text never seen before {time.time()}", path=path
            )
            t0 = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env
            )
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (
                after.ru_stime - before.ru_stime
            )
            if out.returncode:
                print(f"{label}: failed\n{out.stderr[-2000:]}")
                break
            imp, emb, torch = out.stdout.split()
            if attempt == 2:
                verdict = (
                    ""
                    if label != "LocalEmbedder"
                    else (f" ({'PASS' if wall <= 3 else 'FAIL'}: bar <= 3 s)")
                )
                print(
                    f"{label:22s} process {wall:5.2f} s, {cpu:5.2f} CPU-s (import "
                    f"{imp} s, load + embed {emb} s); torch imported: {torch}{verdict}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--paragraphs", type=int, default=400)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ref-batch-size", type=int, default=32)
    parser.add_argument(
        "--skip", default="", help="comma list: paragraphs,queries,cold"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    skip = set(args.skip.split(","))
    if "paragraphs" not in skip:
        chunks = _column(args.data / "brown" / "chunks.csv")
        pick = np.random.default_rng(0).choice(
            len(chunks), args.paragraphs, replace=False
        )
        compare(
            "paragraphs (Brown chunks)",
            [chunks[i] for i in pick],
            args.repeats,
            args.ref_batch_size,
        )
    if "queries" not in skip:
        queries = _column(args.data / "banking77" / "test.csv")[: args.queries]
        compare(
            "one-line queries (Banking77)", queries, args.repeats, args.ref_batch_size
        )
    if "cold" not in skip:
        cold_start()


if __name__ == "__main__":
    main()
