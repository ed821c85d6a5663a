"""Scale on one machine: a memory-mapped corpus searched in place, int8 storage."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embedtasks import DotProductNeighbors
from embedtasks._kernel import (
    Quantized,
    find_mmap,
    l2_normalize,
    quantize,
    top_k,
    top_k_rescored,
)


def _topics(n=3000, d=48, seed=0):
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((30, d)))
    X = centres[rng.integers(0, 30, n)] + 0.3 * rng.standard_normal((n, d))
    m = min(40, n // 4)
    X[n // 2 : n // 2 + m] = X[:m] + 1e-4 * rng.standard_normal((m, d))
    return l2_normalize(X)


def _write(path, X):
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=X.shape)
    out[:] = X
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def test_memmap_corpus_is_searched_in_place(tmp_path):
    X = _topics()
    mapped = _write(tmp_path / "corpus.npy", X)
    nn = DotProductNeighbors(n_neighbors=5).fit(mapped)
    assert find_mmap(nn.embeddings_) is not None  # no copy was made
    assert np.shares_memory(nn.embeddings_, mapped)
    # The file's rows are unit already: the same as searching them in memory.
    ref = DotProductNeighbors(n_neighbors=5, normalize=False).fit(X.copy())
    Q = _topics(n=50, seed=1)  # nn normalises queries; ref must get them so too
    for a, b in zip(nn.search(Q), ref.search(l2_normalize(Q)), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(nn.kneighbors()[1], ref.kneighbors()[1])
    scores, items = nn.recommend(7)
    assert 7 not in items.tolist() and scores.dtype == np.float32


def test_memmap_estimator_pickles_the_file_location_not_the_rows(tmp_path):
    X = _topics()
    nn = DotProductNeighbors().fit(_write(tmp_path / "c.npy", X))
    blob = pickle.dumps(nn)
    assert len(blob) < X.nbytes / 10
    again = pickle.loads(blob)
    assert find_mmap(again.embeddings_) is not None
    Q = X[:20]
    np.testing.assert_array_equal(again.search(Q)[1], nn.search(Q)[1])


def test_memmap_rows_not_unit_or_not_finite_are_named(tmp_path):
    X = _topics(n=200)
    X[17] *= 3
    with pytest.raises(
        ValueError, match=r"Row 17 of the memory-mapped corpus has norm"
    ):
        DotProductNeighbors().fit(_write(tmp_path / "a.npy", X))
    # normalize=False searches raw dot products: any norm is fine.
    DotProductNeighbors(normalize=False).fit(np.load(tmp_path / "a.npy", mmap_mode="r"))
    X = _topics(n=200)
    X[42, 3] = np.nan
    with pytest.raises(ValueError, match=r"Row 42 .* NaN or infinity"):
        DotProductNeighbors().fit(_write(tmp_path / "b.npy", X))


def test_memmap_of_another_dtype_is_loaded_like_any_array(tmp_path):
    X = _topics(n=300).astype(np.float64)
    np.save(tmp_path / "f64.npy", X)
    nn = DotProductNeighbors().fit(np.load(tmp_path / "f64.npy", mmap_mode="r"))
    assert nn.embeddings_.dtype == np.float32 and find_mmap(nn.embeddings_) is None


def test_memmap_search_holds_a_tile_not_the_file(tmp_path):
    """Peak memory of fit + search stays far below the mapped corpus's size."""
    path = tmp_path / "big.npy"
    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(path, "w+", np.float32, (400_000, 128))
    for s in range(0, 400_000, 50_000):
        out[s : s + 50_000] = l2_normalize(rng.standard_normal((50_000, 128)))
    out.flush()
    del out  # a 205 MB file
    code = textwrap.dedent(f"""
        import numpy as np
        from embedtasks import DotProductNeighbors
        def peak():  # this process's own peak (ru_maxrss inherits the parent's)
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
        X = np.load({str(path)!r}, mmap_mode="r")
        q = np.random.default_rng(1).standard_normal((3, 128)).astype(np.float32)
        before = peak()
        nn = DotProductNeighbors(n_neighbors=10).fit(X)
        nn.search(q)
        print((peak() - before) * 1024)
    """)
    grown = int(subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout)  # fmt: skip
    # One 32 MiB tile of the file is resident at a time, plus scratch buffers.
    assert grown < 80e6, f"peak memory grew by {grown / 1e6:.0f} MB for a 205 MB file"


def test_int8_storage_is_a_quarter_and_finds_the_float32_results():
    X = _topics()
    Q = _topics(n=200, seed=3)
    ref = DotProductNeighbors(n_neighbors=10).fit(X)
    nn = DotProductNeighbors(n_neighbors=10, storage="int8").fit(X)
    assert nn.codes_.dtype == np.int8 and nn.codes_.nbytes == X.nbytes // 4
    scores, idx = nn.search(Q)
    ref_scores, ref_idx = ref.search(Q)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(scores, ref_scores)  # rescored: same bits
    np.testing.assert_array_equal(nn.kneighbors()[1], ref.kneighbors()[1])
    again = pickle.loads(pickle.dumps(nn))
    np.testing.assert_array_equal(again.search(Q)[1], ref_idx)


def test_int8_with_a_mapped_file_keeps_only_codes_in_memory(tmp_path):
    X = _topics()
    nn = DotProductNeighbors(storage="int8").fit(_write(tmp_path / "c.npy", X))
    assert find_mmap(nn.embeddings_) is not None and nn.codes_.nbytes == X.nbytes // 4
    ref = DotProductNeighbors(normalize=False).fit(X.copy())
    Q = X[:30]
    np.testing.assert_array_equal(nn.search(Q)[1], ref.search(l2_normalize(Q))[1])


def test_top_k_rescored_is_split_invariant_and_honours_exclusions():
    X = _topics()
    codes, scale, zero = quantize(X)
    coarse = Quantized(codes, scale, zero)
    assert np.abs(coarse.rows(np.arange(50)) - X[:50]).max() <= scale.max()
    whole = top_k_rescored(X[:64], coarse, X, 5, 20, self_offset=0)
    parts = [top_k_rescored(X[i : min(i + 9, 64)], coarse, X, 5, 20, self_offset=i)
             for i in range(0, 64, 9)]  # fmt: skip
    np.testing.assert_array_equal(np.vstack([p.indices for p in parts]), whole.indices)
    np.testing.assert_array_equal(np.vstack([p.scores for p in parts]), whole.scores)
    assert not (whole.indices == np.arange(64)[:, None]).any()
    exact = top_k(X[:64], X, 5, self_offset=0)
    np.testing.assert_array_equal(whole.indices, exact.indices)


def test_quantize_constant_column_and_bad_storage():
    codes, scale, zero = quantize(np.ones((4, 2), np.float32))
    assert (codes == 0).all() and (zero == 1).all()
    with pytest.raises(ValueError, match="'storage' parameter"):
        DotProductNeighbors(storage="int4").fit(np.ones((3, 2)))


def test_approximate_paths_with_one_list_are_the_exact_ones():
    from embedtasks._kernel import (
        approximate_scan,
        approximate_top_k,
        neighbour_scan,
    )

    X = _topics(n=800)
    exact = neighbour_scan(X, 0.9, 1000)
    one = approximate_scan(X, 0.9, 1000, n_lists=1)
    np.testing.assert_array_equal(one.nn_idx, exact.nn_idx)
    np.testing.assert_array_equal(one.nn_sim, exact.nn_sim)
    np.testing.assert_array_equal(one.pairs, exact.pairs)
    assert one.n_pairs == exact.n_pairs
    knn = approximate_top_k(X, 5, n_lists=1)
    ref = top_k(X, X, 5, self_offset=0)
    np.testing.assert_array_equal(knn.indices, ref.indices)
    np.testing.assert_array_equal(knn.scores, ref.scores)


def test_approximate_scan_finds_the_near_duplicates():
    from embedtasks._kernel import approximate_scan, neighbour_scan

    X = _topics(n=6000, d=32, seed=5)
    exact = neighbour_scan(X, 0.95, 100_000)
    approx = approximate_scan(X, 0.95, 100_000, n_lists=40)
    truth = set(map(tuple, exact.pairs.tolist()))
    found = set(map(tuple, approx.pairs.tolist()))
    assert found <= truth  # nothing invented: every score is exact
    assert len(found & truth) >= 0.99 * len(truth) and len(truth) >= 40
    agree = approx.nn_idx == exact.nn_idx
    assert agree.mean() > 0.8  # nearest neighbours: approximate (see the bench)
    # Where the neighbour agrees the score is the exact one, bit for bit.
    np.testing.assert_array_equal(approx.nn_sim[agree], exact.nn_sim[agree])


def test_estimators_take_the_approximate_path_on_request():
    from embedtasks import DiversityReport, OutlierScorer

    X = _topics(n=3000)
    exact = DiversityReport(neighbors="exact", random_state=0).fit(X)
    approx = DiversityReport(neighbors="approximate", random_state=0).fit(X)
    assert set(map(tuple, approx.duplicate_pairs_.tolist())) == set(
        map(tuple, exact.duplicate_pairs_.tolist())
    )
    scorer = OutlierScorer(neighbors="approximate").fit(X)
    ref = OutlierScorer(neighbors="exact").fit(X)
    # Approximate neighbours are a subset of the candidates: never more similar.
    assert (scorer.training_scores_ <= ref.training_scores_ + 1e-6).all()
    rank = np.corrcoef(
        np.argsort(np.argsort(scorer.training_scores_)),
        np.argsort(np.argsort(ref.training_scores_)),
    )[0, 1]
    assert rank > 0.8, rank
    with pytest.raises(ValueError, match="'neighbors' parameter"):
        OutlierScorer(neighbors="fast").fit(X)
