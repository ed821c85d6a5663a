"""LocalEmbedder (torch-free default backend, int8 and float32) against
sentence-transformers itself, each in its own process.

One run prints, with the same number of CPU threads on every side:

1. **paragraphs**: Brown corpus chunks (``shared/data/brown/chunks.csv``, ~110
   tokens each; a seeded sample of ``--paragraphs``), and
2. **one-line queries**: Banking77 test texts (``--queries``):
   ``SentenceTransformer.encode`` (batch ``--ref-batch-size``, its default 32),
   ``LocalEmbedder(precision="int8")`` (the default) and
   ``LocalEmbedder(precision="float32")``, each loaded once in a worker process
   of its own; the workers embed the texts in turn (the order rotating every
   round, a pause between runs so no thread pool still spins; torch's OpenMP
   threads told to sleep when idle, ``OMP_WAIT_POLICY=PASSIVE``, as ONNX
   Runtime's are here), ``--repeats`` times. Reported: the median CPU-seconds
   of the embedding call (process time of the worker: all its threads), texts
   per CPU-second, the ratio to
   sentence-transformers per CPU-second (the bar: int8 >= 2.0x on paragraphs),
   median wall seconds, and the cosine of each text's vector with
   sentence-transformers' (int8: bar mean >= 0.99, min >= 0.97).
3. **warm latency**: one new text at a time through each worker (100 calls,
   after warm-up; ``LocalEmbedder.fit_transform([text])`` with no cache):
   p50 and p95 milliseconds, wall (bar: int8 p95 <= 15 ms) and CPU (what a
   loaded machine's scheduling does not add).
4. **task quality**: Banking77 (train 10,003 / test 3,080) and a seeded sample of
   ``--quality-brown`` Brown paragraphs embedded in int8, beside the float32
   vectors (``*_minilm.npy``, sentence-transformers' own): accuracy of
   LogisticRegression and of NearestLabelClassifier on Banking77, the V-measure
   of KMeans with the true k on Banking77, and of EmbeddingClusterer on
   Banking77 and on the Brown genres; clusterings are the median over
   ``--seeds`` random states, each seed printed (bar: within 0.5 points).
5. **memory**: peak RSS of a fresh process embedding ``--rss-texts`` Brown
   paragraphs with ``LocalEmbedder(cache_dir=None)`` (bar: <= 600 MB at 10,000),
   and its RSS after the call.
6. **cold start**: a fresh Python process that embeds one new text (no cache),
   run twice (the second run is the figure: files in the page cache), for
   LocalEmbedder and for sentence-transformers; plus whether torch was imported.

Run: ``python benchmarks/bench_local.py`` (``--skip`` any of paragraphs, queries,
latency, quality, memory, cold). The machine is shared: compare the ratios and
CPU-seconds, not wall seconds; re-run if they disagree.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve()
#: The shared data beside the checkout (or beside the folder of worktrees).
SHARED = next(
    (p / "shared" / "data" for p in _HERE.parents[2:4] if (p / "shared").is_dir()),
    _HERE.parents[2] / "shared" / "data",
)
METHODS = ("sentence-transformers", "int8", "float32")

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
RSS = """
import csv, json, resource, sys
from embedtasks import LocalEmbedder
with open({path!r}, newline="", encoding="utf-8") as f:
    texts = [row["text"] for row in csv.DictReader(f)][:{n}]
texts = [f"{{t}} ({{i}})" for i, t in enumerate(texts * (1 + {n} // len(texts)))][:{n}]
X = LocalEmbedder(cache_dir=None, progress=False).fit_transform(texts)
status = open("/proc/self/status").read()
now = int(status.split("VmRSS:")[1].split()[0]) // 1024
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps({{"peak": peak, "after": now, "n": len(X)}}))
"""


def _column(path: Path, name: str = "text") -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row[name] for row in csv.DictReader(f)]


# -- the worker: one method, loaded once, driven over stdin/stdout -------------------
def worker(method: str, ref_batch: int) -> None:
    """Read commands (JSON lines) and answer with JSON lines."""
    if method == "sentence-transformers":
        import torch
        from sentence_transformers import SentenceTransformer

        from embedtasks.embedders._onnx import _bert
        from embedtasks.embedders._onnx import _runtime as runtime

        torch.set_num_threads(_bert.n_threads())
        model = SentenceTransformer(
            runtime.resolve_model_path("all-MiniLM-L6-v2"), device="cpu"
        )

        def embed(texts: list[str]) -> np.ndarray:
            return model.encode(
                texts, batch_size=ref_batch, normalize_embeddings=True
            ).astype(np.float32)
    else:
        from embedtasks import LocalEmbedder

        ours = LocalEmbedder(cache_dir=None, progress=False, precision=method)

        def embed(texts: list[str]) -> np.ndarray:
            return ours.fit_transform(texts)

    embed(["warm up", "a second text to warm up with"])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        texts = command.get("texts") or _read_texts(command["file"])
        if command["do"] == "run":
            c0, t0 = time.process_time(), time.perf_counter()
            X = embed(texts)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            np.save(command["out"], X)
            print(json.dumps({"cpu": cpu, "wall": wall}), flush=True)
        elif command["do"] == "latency":
            embed(texts[:5])
            times, cpu = [], []
            for text in texts:
                t0, c0 = time.perf_counter(), time.process_time()
                embed([text])
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            print(json.dumps({"times": times, "cpu": cpu}), flush=True)


def _read_texts(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return list(json.load(f))


def _quiet_threads(method: str) -> dict[str, str]:
    """torch's OpenMP threads sleep when idle, as ours do: on a busy machine a
    spinning pool counts CPU-seconds that do no work, which would flatter us."""
    if method != "sentence-transformers" or "OMP_WAIT_POLICY" in os.environ:
        return {}
    return {"OMP_WAIT_POLICY": "PASSIVE"}


class Worker:
    """A worker process for one method."""

    def __init__(self, method: str, ref_batch: int) -> None:
        self.method = method
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", method, "--ref-batch-size",
             str(ref_batch)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **_quiet_threads(method)},
        )  # fmt: skip
        self._answer()

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.method} died")
        return json.loads(line)

    def ask(self, **command) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def compare(
    name: str, texts: list[str], workers: dict[str, Worker], repeats: int
) -> None:
    from embedtasks.embedders._onnx import _bert

    tmp = Path(tempfile.mkdtemp())
    file = tmp / "texts.json"
    file.write_text(json.dumps(texts), encoding="utf-8")
    cpu: dict[str, list[float]] = {m: [] for m in workers}
    wall: dict[str, list[float]] = {m: [] for m in workers}
    order = list(workers)
    for r in range(repeats):  # rotate who goes first each round
        for method in order[r % len(order) :] + order[: r % len(order)]:
            time.sleep(0.5)  # let the last worker's thread pool go to sleep
            got = workers[method].ask(do="run", file=str(file), out=str(tmp / method))
            cpu[method].append(got["cpu"])
            wall[method].append(got["wall"])
    vectors = {m: np.load(tmp / f"{m}.npy") for m in workers}
    print(
        f"\n== {name}: {len(texts)} texts; {_bert.n_threads()} threads each, "
        f"{os.cpu_count()} CPUs; medians of {repeats} runs, each in its own process"
    )
    ref = "sentence-transformers"
    for method in workers:
        c, w = float(np.median(cpu[method])), float(np.median(wall[method]))
        line = (
            f"{method:22s} {c:7.2f} CPU-s {len(texts) / c:7.1f} texts/CPU-s "
            f"(wall {w:6.2f} s)"
        )
        if method != ref and ref in workers:
            ratio = float(np.median(cpu[ref])) / c
            cos = np.einsum(
                "ij,ij->i", vectors[method].astype(np.float64), vectors[ref]
            )
            line += (
                f" | {ratio:4.2f}x sentence-transformers per CPU-s; cosine with it "
                f"mean {cos.mean():.4f} min {cos.min():.4f}"
            )
        print(line + f"  [{' '.join(f'{x:.2f}' for x in cpu[method])}]")


def latency(workers: dict[str, Worker], texts: list[str]) -> None:
    print("\n== warm latency: one new text per call (100 calls, ms)")
    for method, w in workers.items():
        got = w.ask(do="latency", texts=texts)
        p50, p95 = np.percentile(np.asarray(got["times"]) * 1000, [50, 95])
        c50, c95 = np.percentile(np.asarray(got["cpu"]) * 1000, [50, 95])
        bar = ""
        if method == "int8":
            bar = f" ({'PASS' if p95 <= 15 else 'FAIL'}: bar p95 <= 15 ms)"
        print(
            f"{method:22s} wall p50 {p50:6.1f} ms  p95 {p95:6.1f} ms{bar}; "
            f"CPU p50 {c50:5.1f} ms  p95 {c95:5.1f} ms"
        )


def _clusterer_v(X: np.ndarray, y: np.ndarray, seeds: int) -> list[float]:
    from sklearn.metrics import v_measure_score

    from embedtasks import EmbeddingClusterer

    return [
        float(
            v_measure_score(
                y, EmbeddingClusterer(random_state=s, cache_dir=None).fit(X).labels_
            )
        )
        for s in range(seeds)
    ]


def quality(data: Path, n_brown: int, seeds: int) -> None:
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import v_measure_score

    from embedtasks import LocalEmbedder, NearestLabelClassifier

    bank = data / "banking77"
    with open(bank / "train.csv", newline="", encoding="utf-8") as f:
        train = list(csv.DictReader(f))
    with open(bank / "test.csv", newline="", encoding="utf-8") as f:
        test = list(csv.DictReader(f))
    with open(data / "brown" / "chunks.csv", newline="", encoding="utf-8") as f:
        brown = list(csv.DictReader(f))
    pick = np.sort(
        np.random.default_rng(0).choice(len(brown), min(n_brown, len(brown)), False)
    )
    y_train = np.array([r["category"] for r in train])
    y_test = np.array([r["category"] for r in test])
    y_brown = np.array([brown[i]["genre"] for i in pick])
    emb = LocalEmbedder(cache_dir=None, progress=False, precision="int8")
    # float32: sentence-transformers' own vectors, which the float32 default
    # backend reproduces (cosine >= 0.9999999).
    vectors = {
        "float32": (
            np.load(bank / "train_minilm.npy"),
            np.load(bank / "test_minilm.npy"),
            np.load(data / "brown" / "chunks_minilm.npy")[pick],
        ),
        "int8": (
            emb.fit_transform([r["text"] for r in train]),
            emb.fit_transform([r["text"] for r in test]),
            emb.fit_transform([brown[i]["text"] for i in pick]),
        ),
    }
    cos = [
        np.einsum(
            "ij,ij->i", vectors["int8"][j].astype(np.float64), vectors["float32"][j]
        )
        for j in (1, 2)
    ]
    print(
        f"\n== task quality: Banking77 (train {len(train)}, test {len(test)}), Brown "
        f"({len(pick)} paragraphs, {len(set(y_brown))} genres); int8 vs float32 "
        f"cosine: Banking77 test mean {cos[0].mean():.4f} min {cos[0].min():.4f}, "
        f"Brown mean {cos[1].mean():.4f} min {cos[1].min():.4f}; "
        f"EmbeddingClusterer: median of random_state 0..{seeds - 1} [each seed]"
    )
    scores: dict[str, dict[str, list[float]]] = {}
    k = len(np.unique(y_test))
    for name, (A, B, C) in vectors.items():
        scores[name] = {
            "Banking77 LogisticRegression acc": [
                LogisticRegression(C=10, max_iter=2000).fit(A, y_train).score(B, y_test)
            ],
            "Banking77 NearestLabelClassifier acc": [
                NearestLabelClassifier().fit(A, y_train).score(B, y_test)
            ],
            "Banking77 KMeans(k=77) V": [
                v_measure_score(
                    y_test, KMeans(k, n_init=1, random_state=s).fit_predict(B)
                )
                for s in range(seeds)
            ],
            "Banking77 EmbeddingClusterer V": _clusterer_v(B, y_test, seeds),
            "Brown genres EmbeddingClusterer V": _clusterer_v(C, y_brown, seeds),
        }
    for metric in scores["float32"]:
        f32, i8 = (np.asarray(scores[m][metric]) * 100 for m in ("float32", "int8"))
        f, i = float(np.median(f32)), float(np.median(i8))
        verdict = "PASS" if abs(i - f) <= 0.5 else "FAIL"
        spread = ""
        if len(f32) > 1:
            spread = (
                f"  [float32 {' '.join(f'{x:.2f}' for x in f32)}; "
                f"int8 {' '.join(f'{x:.2f}' for x in i8)}]"
            )
        print(
            f"{metric:37s} float32 {f:6.2f}  int8 {i:6.2f}  ({i - f:+.2f}, "
            f"{verdict}){spread}"
        )


def memory(data: Path, n: int) -> None:
    code = RSS.format(path=str(data / "brown" / "chunks.csv"), n=n)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    verdict = "PASS" if got["peak"] <= 600 else "FAIL"
    print(
        f"\n== memory: a fresh process embeds {got['n']} Brown paragraphs "
        "(default precision): "
        f"peak RSS {got['peak']} MB ({verdict}: bar <= 600 MB), {got['after']} MB "
        f"after the call; {time.perf_counter() - t0:.0f} s"
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
                print(
                    f"{label:22s} process {wall:5.2f} s, {cpu:5.2f} CPU-s (import "
                    f"{imp} s, load + embed {emb} s); torch imported: {torch}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--paragraphs", type=int, default=400)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ref-batch-size", type=int, default=32)
    parser.add_argument("--rss-texts", type=int, default=10_000)
    parser.add_argument("--quality-brown", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--skip",
        default="",
        help="comma list: paragraphs,queries,latency,quality,memory,cold",
    )
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.ref_batch_size)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    skip = set(args.skip.split(","))
    chunks = _column(args.data / "brown" / "chunks.csv")
    queries = _column(args.data / "banking77" / "test.csv")
    if {"paragraphs", "queries", "latency"} - skip:
        workers = {m: Worker(m, args.ref_batch_size) for m in METHODS}
        try:
            if "paragraphs" not in skip:
                pick = np.random.default_rng(0).choice(
                    len(chunks), args.paragraphs, replace=False
                )
                compare(
                    "paragraphs (Brown chunks)",
                    [chunks[i] for i in pick],
                    workers,
                    args.repeats,
                )
            if "queries" not in skip:
                compare(
                    "one-line queries (Banking77)",
                    queries[: args.queries],
                    workers,
                    args.repeats,
                )
            if "latency" not in skip:
                latency(workers, [f"{q} ({i})" for i, q in enumerate(queries[:100])])
        finally:
            for w in workers.values():
                w.close()
    if "quality" not in skip:
        quality(args.data, args.quality_brown, args.seeds)
    if "memory" not in skip:
        memory(args.data, args.rss_texts)
    if "cold" not in skip:
        cold_start()


if __name__ == "__main__":
    main()
