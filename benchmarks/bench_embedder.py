"""Embedding throughput against a loopback server with latency and rate limits.

Starts :class:`embedtasks.testing.FakeEmbeddingServer` in a separate process
(50 ms per request, a tokens-per-minute and a requests-per-minute limit, at most
``--max-inputs`` inputs per request, answers in shuffled ``index`` order) and
embeds the Banking77 texts three ways, in one run:

* ours: ``EmbeddingClient`` (what ``OpenAIEmbedder`` uses), told the limits;
* a plain sequential loop of batches of 100 with httpx and float JSON (what most
  tutorials do);
* the official ``openai`` client used the obvious way: a loop of
  ``client.embeddings.create(input=batch)`` over batches of ``--max-inputs``.

The bound is the time the limits allow: the server's token count over its
tokens-per-minute rate, or the requests over its requests-per-minute rate
(whichever is longer), plus one request's latency. Each method's throughput is
reported as a share of that bound, and ours as a ratio to the others. The
"in order" column checks every vector against the fake's deterministic one.

Run: ``.venv/bin/python benchmarks/bench_embedder.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from embedtasks.embedders._http._client import EmbeddingClient
from embedtasks.testing import fake_embedding, fake_token_count

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"
MODEL = "text-embedding-3-small"


def load_texts(data: Path, limit: int) -> list[str]:
    texts: dict[str, None] = {}
    for name in ("train.csv", "test.csv"):
        with open(data / name, newline="") as f:
            for row in csv.DictReader(f):
                texts.setdefault(row["text"].strip() or "?", None)
    return list(texts)[:limit]


def start_server(**kwargs: object) -> tuple[subprocess.Popen[str], str]:
    server = str(Path(__file__).with_name("_fake_server.py"))
    proc = subprocess.Popen(
        [sys.executable, server, json.dumps(kwargs)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.kill()
        raise RuntimeError("the fake server did not start")
    return proc, line[1]


def ours(url: str, texts: list[str], args: argparse.Namespace) -> np.ndarray:
    client = EmbeddingClient(
        MODEL,
        base_url=url,
        max_inputs_per_request=args.max_inputs,
        requests_per_minute=args.rpm,
        tokens_per_minute=args.tpm,
        max_concurrency=8,
    )
    out = client.embed(texts)
    stats = client.last_stats
    print(
        f"  ours: {stats.requests} requests, {stats.retries} retries, "
        f"{stats.rate_limited} rate-limited"
    )
    return out


def tutorial_loop(url: str, texts: list[str], args: argparse.Namespace) -> np.ndarray:
    vectors: list[list[float]] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(0, len(texts), 100):
            r = http.post(
                "/embeddings", json={"model": MODEL, "input": texts[i : i + 100]}
            )
            r.raise_for_status()
            vectors.extend(item["embedding"] for item in r.json()["data"])
    return np.array(vectors, dtype=np.float32)


def openai_loop(url: str, texts: list[str], args: argparse.Namespace) -> np.ndarray:
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="unused")
    vectors: list[list[float]] = []
    step = args.max_inputs
    for i in range(0, len(texts), step):
        response = client.embeddings.create(model=MODEL, input=texts[i : i + step])
        vectors.extend(item.embedding for item in response.data)
    return np.array(vectors, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n", type=int, default=13_000, help="texts (unique)")
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--max-inputs", type=int, default=256)
    parser.add_argument(
        "--bound-seconds",
        type=float,
        default=4.0,
        help="sets the tokens-per-minute limit so that the texts need this long",
    )
    parser.add_argument("--rpm", type=float, default=3000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["tutorial", "openai"])
    args = parser.parse_args()

    texts = load_texts(args.data, args.n)
    tokens = sum(fake_token_count(t) for t in texts)
    args.tpm = math.ceil(tokens * 60 / args.bound_seconds)
    n_requests = math.ceil(len(texts) / args.max_inputs)
    bound = max(tokens * 60 / args.tpm, (n_requests - 1) * 60 / args.rpm)
    bound += args.latency
    expected = np.stack([fake_embedding(t, args.dim) for t in texts])
    print(
        f"{len(texts)} texts, {tokens} server tokens, dim {args.dim}; server: "
        f"{args.latency * 1000:.0f} ms/request, <= {args.max_inputs} inputs/request, "
        f"{args.tpm} tokens/min, {args.rpm:g} requests/min, shuffled answers"
    )
    print(f"bound allowed by latency and rate limits: {bound:.2f} s\n")

    methods = [("ours (EmbeddingClient)", ours)]
    if "tutorial" not in args.skip:
        methods.append(("sequential httpx loop, batch 100, float JSON", tutorial_loop))
    if "openai" not in args.skip:
        methods.append((f"openai client loop, batch {args.max_inputs}", openai_loop))
    results = []
    for name, fn in methods:
        proc, url = start_server(
            dim=args.dim,
            latency=args.latency,
            max_inputs=args.max_inputs,
            tokens_per_minute=args.tpm,
            requests_per_minute=args.rpm,
            shuffle=True,
        )
        try:
            start = time.perf_counter()
            out = fn(url, texts, args)
            seconds = time.perf_counter() - start
        finally:
            proc.kill()
            proc.wait()
        in_order = out.shape == expected.shape and np.allclose(out, expected, atol=1e-6)
        results.append((name, seconds, in_order))

    ours_s = results[0][1]
    print(
        f"\n{'method':48s} {'seconds':>8s} {'texts/s':>8s} {'of bound':>9s} "
        f"{'ours x':>7s}  in order"
    )
    for name, seconds, in_order in results:
        print(
            f"{name:48s} {seconds:8.2f} {len(texts) / seconds:8.0f} "
            f"{bound / seconds:9.1%} {seconds / ours_s:7.2f}  {in_order}"
        )


if __name__ == "__main__":
    main()
