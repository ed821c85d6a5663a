"""NearDuplicates: held-out near-copies of paragraphs, leakage, scale, degenerate input.

Sections (``--section`` picks one; default: all):

* ``quality``: Brown paragraphs (5-sentence chunks; ``benchmarks/_dedupe_data.py``)
  from half the documents are sources, each with five injected near-copies
  (lower case, punctuation stripped, one word edit per 40 words, boilerplate
  appended, truncated to 80%); paragraphs of the other documents are unseen rows.
  Embedded with the bundled all-MiniLM-L6-v2 (``LocalEmbedder``, cached).
  Grouping (sources + unseen + copies): the share of copies grouped with their
  source, by edit, and the share of groups that are pure (one source text);
  leakage (fitted on the sources; test = copies + unseen): the share of copies
  flagged, of unseen rows flagged, and the chance share. At the default
  ``threshold="auto"`` (derived from the data), at 0.95 and at the thresholds
  given with ``--thresholds``, then with ``leakage``'s default
  ``threshold="auto"``. ``--n-sources``/``--n-unseen`` set the mix (500/500:
  most rows have a near-copy; 100/3000: few do).
* ``scale``: a million Banking77-like rows (``bench_scale.banking77_like``: 1%
  near-copies) on the approximate path: ``NearDuplicates.fit`` beside the
  reference, ``approximate_scan`` alone (the pairs ``DiversityReport`` lists, no
  groups), each in its own process, on the same vectors; the recall of the exact
  pairs >= 0.95 checked by brute force on sampled rows.
* ``exact``: 100k such rows on the exact path: ``NearDuplicates`` beside the
  exact symmetric scan alone (``neighbour_scan``, what ``DiversityReport`` runs).
* ``degenerate``: 30,000 identical rows, 30,000 distinct rows, 5,000
  near-identical (not bit-identical) rows: time and groups.

Run: ``python benchmarks/bench_dedupe.py`` (``--quick``: 10x smaller scale
sections). Bars (issue 24): >= 99% of copies grouped with their source, >= 99% of
groups pure; >= 99% of copies flagged, <= 1% of unseen rows; 1M x 384 in <= 120 s
with recall >= 0.99.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: The shared data folder: beside the repository (or beside its worktree folder).
SHARED = next(
    (p / "shared" / "data" for p in HERE.parents[1:3] if (p / "shared").is_dir()),
    HERE.parents[1] / "shared" / "data",
)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


# ------------------------------------------------------------------ quality
def quality_section(args):
    import pandas as pd

    sys.path.insert(0, str(HERE))
    from _dedupe_data import EDITS, held_out
    from embedtasks import LocalEmbedder, NearDuplicates

    frame = pd.read_csv(SHARED / "brown" / "chunks.csv")
    sources, unseen, copies, source_of, kind = held_out(
        frame, args.n_sources, args.n_unseen or args.n_sources, seed=args.seed
    )
    texts = sources + unseen + copies
    embedder = LocalEmbedder(cache_dir=args.cache_dir)
    X, seconds = timed(embedder.fit_transform, texts)
    n_s = len(sources)
    print(
        f"\nheld-out near-copies: {n_s} Brown paragraphs x {len(EDITS)} edits, "
        f"{len(unseen)} unseen paragraphs (embedded in {seconds:.0f} s)"
    )
    origin = np.concatenate([np.arange(n_s), n_s + np.arange(len(unseen)), source_of])
    n_u = len(unseen)
    C, S, U = X[n_s + n_u :], X[:n_s], X[n_s : n_s + n_u]
    sims = np.einsum("ij,ij->i", C, S[source_of])
    for edit in EDITS:
        v = sims[kind == edit]
        print(
            f"  similarity to the source, {edit:<12} min {v.min():.3f}  p1 "
            f"{np.percentile(v, 1):.3f}  median {np.median(v):.3f}"
        )
    for threshold in ["auto", 0.95, *args.thresholds]:
        dedupe = NearDuplicates(threshold, random_state=0).fit(X)
        g = dedupe.groups_
        together = g[n_s + n_u :] == g[source_of]
        pure = np.mean(
            [np.unique(origin[g == k]).size == 1 for k in range(dedupe.n_groups_)]
        )
        by_edit = ", ".join(f"{e} {together[kind == e].mean():.1%}" for e in EDITS)
        leak = (
            NearDuplicates(threshold, random_state=0)
            .fit(S)
            .leakage(np.vstack([C, U]), threshold=None)
        )
        flagged = leak.frame["leaked"].to_numpy()
        name = (
            f"auto (the default; here {dedupe.threshold_:.3f})"
            if threshold == "auto"
            else f"{threshold:g}"
        )
        print(
            f"  threshold {name}: copies grouped with their source "
            f"{together.mean():.2%} ({by_edit}); groups pure {pure:.2%}; leakage: "
            f"copies flagged {flagged[: len(C)].mean():.2%}, unseen flagged "
            f"{flagged[len(C) :].mean():.2%}, chance share "
            f"{leak.summary['chance_share']:.2%}"
        )
    leak = NearDuplicates(random_state=0).fit(S).leakage(np.vstack([C, U]))
    flagged = leak.frame["leaked"].to_numpy()
    print(
        f"  leakage, the default threshold='auto' (here "
        f"{leak.summary['threshold']:.3f}): copies flagged "
        f"{flagged[: len(C)].mean():.2%} ("
        + ", ".join(f"{e} {flagged[: len(C)][kind == e].mean():.1%}" for e in EDITS)
        + f"), unseen flagged {flagged[len(C) :].mean():.2%}, chance share "
        f"{leak.summary['chance_share']:.2%} (bars: >= 99%, <= 1%)"
    )


# -------------------------------------------------------------------- scale
def _child(kind, path, n_sample, seed, threshold=0.95):
    """Runs in its own process: one method on the vectors in ``path``."""
    from embedtasks import NearDuplicates
    from embedtasks._kernel import above_threshold, approximate_scan, neighbour_scan

    X = np.load(path, mmap_mode="r")
    X = np.ascontiguousarray(X)
    out = {}
    start = time.perf_counter()
    cpu0 = time.process_time()
    if kind == "ours-approximate":
        d = NearDuplicates(neighbors="approximate", random_state=0).fit(X)
        out["groups"] = d.n_groups_
        out["recall_reported"] = d.approximate_recall_
        out["threshold"] = d.threshold_
    elif kind == "ours-exact":
        d = NearDuplicates(neighbors="exact").fit(X)
        out["groups"] = d.n_groups_
        out["threshold"] = d.threshold_
    elif kind == "scan-approximate":
        out["pairs"] = int(approximate_scan(X, threshold, 50_000_000).n_pairs)
    else:  # scan-exact
        out["pairs"] = int(neighbour_scan(X, threshold, 50_000_000).n_pairs)
    out["seconds"] = time.perf_counter() - start
    out["cpu"] = time.process_time() - cpu0
    if kind == "ours-approximate":  # brute force on sampled rows
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(X.shape[0], n_sample, replace=False))
        found = above_threshold(X[sample], X, d.threshold_)
        has_copy = np.array([(idx != r).any() for r, (idx, _) in
                             zip(sample, found, strict=True)])  # fmt: skip
        grouped = d.group_sizes_[d.groups_[sample]] > 1
        out["rows_with_copy"] = int(has_copy.sum())
        out["rows_with_copy_grouped"] = int((has_copy & grouped).sum())
        out["rows_without_copy_grouped"] = int((~has_copy & grouped).sum())
    print(json.dumps(out))


def _run(kind, path, n_sample=0, seed=0, threshold=0.95):
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_dedupe as b; "
        f"b._child({kind!r}, {str(path)!r}, {n_sample}, {seed}, {threshold})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def scale_section(args):
    sys.path.insert(0, str(HERE))
    from bench_scale import banking77_like

    n = args.rows // (10 if args.quick else 1)
    X = banking77_like(n, np.random.default_rng(0), data=SHARED / "banking77")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "X.npy"
        np.save(path, X)
        del X
        print(f"\napproximate path, {n:,} x 384 Banking77-like rows (1% near-copies)")
        ours = _run("ours-approximate", path, args.sample, 1)
        ref = _run("scan-approximate", path, threshold=ours["threshold"])
    print(
        f"  reference approximate_scan (pairs only, no groups): {ref['seconds']:.1f} "
        f"s wall, {ref['cpu']:.0f} s CPU, {ref['pairs']:,} pairs"
    )
    print(
        f"  NearDuplicates(neighbors='approximate').fit: {ours['seconds']:.1f} s "
        f"wall, {ours['cpu']:.0f} s CPU, {ours['groups']:,} groups at the derived "
        f"threshold {ours['threshold']:.3f} (bar <= 120 s); "
        f"ratio {ours['seconds'] / ref['seconds']:.2f}x the reference"
    )
    print(
        f"  approximate_recall_ (pairs above it found, its own sample of 2,000 rows): "
        f"{ours['recall_reported']:.4f} (bar >= 0.99); brute force on "
        f"{args.sample:,} other rows: {ours['rows_with_copy_grouped']}/"
        f"{ours['rows_with_copy']} rows with a near-copy are grouped, "
        f"{ours['rows_without_copy_grouped']} rows without one are"
    )


def exact_section(args):
    sys.path.insert(0, str(HERE))
    from bench_scale import banking77_like

    n = args.exact_rows // (10 if args.quick else 1)
    X = banking77_like(n, np.random.default_rng(0), data=SHARED / "banking77")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "X.npy"
        np.save(path, X)
        ours = _run("ours-exact", path)
        ref = _run("scan-exact", path, threshold=ours["threshold"])
    print(f"\nexact path, {n:,} x 384 Banking77-like rows")
    print(
        f"  reference neighbour_scan (DiversityReport's pair scan): "
        f"{ref['seconds']:.1f} s, {ref['pairs']:,} pairs; NearDuplicates exact: "
        f"{ours['seconds']:.1f} s, {ours['groups']:,} groups (threshold "
        f"{ours['threshold']:.3f}); ratio "
        f"{ours['seconds'] / ref['seconds']:.2f}x"
    )


def degenerate_section(args):
    from embedtasks import NearDuplicates
    from embedtasks._kernel import l2_normalize

    rng = np.random.default_rng(0)
    row = l2_normalize(rng.standard_normal((1, 384)))
    cases = {
        "30,000 identical rows": np.repeat(row, 30_000, axis=0),
        "30,000 distinct rows": l2_normalize(rng.standard_normal((30_000, 384))),
        "5,000 near-identical rows": l2_normalize(
            row + 0.01 * rng.standard_normal((5_000, 384)).astype(np.float32)
        ),
    }
    print("\ndegenerate input (exact path)")
    for name, X in cases.items():
        d, seconds = timed(NearDuplicates().fit, X)
        print(
            f"  {name}: {seconds:.2f} s, {d.n_groups_:,} groups, {d.keep_.sum():,} "
            f"kept, lowest similarity in the largest group "
            f"{d.min_similarity_[d.group_sizes_.argmax()]:.4f}"
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--section", choices=["quality", "scale", "exact", "degenerate"], default=None
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n-sources", type=int, default=500)
    p.add_argument("--n-unseen", type=int, help="unseen paragraphs (--n-sources)")
    p.add_argument("--seed", type=int, default=0, help="which paragraphs and edits")
    p.add_argument("--thresholds", type=float, nargs="*", default=[0.9, 0.85, 0.8])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--exact-rows", type=int, default=100_000)
    p.add_argument("--sample", type=int, default=500)
    p.add_argument("--cache-dir", default=os.environ.get("EMBEDTASKS_CACHE_DIR"))
    args = p.parse_args()
    sections = {
        "degenerate": degenerate_section,
        "quality": quality_section,
        "exact": exact_section,
        "scale": scale_section,
    }
    for name, fn in sections.items():
        if args.section in (None, name):
            fn(args)


if __name__ == "__main__":
    main()
