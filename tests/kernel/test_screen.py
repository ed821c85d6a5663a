"""The integer screen picks candidates only: results are the float path's bits.

The screen (``embedtasks._kernel._screen``) ranks rows by an exact integer
product of int8 codes and keeps every row its error bound cannot rule out; the
survivors are rescored canonically. These tests check the bound itself on hard
inputs, and that searching with the screen returns exactly what the float32 path
returns, on corpora full of near-duplicates, copies and ties, with exclusions,
threads and any split of the queries.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedtasks import DotProductNeighbors
from embedtasks._kernel import (
    MIN_SCREEN_ROWS,
    build_screen,
    l2_normalize,
    screen_available,
    top_k,
)
from embedtasks._kernel._screen import _ZERO_POINT, _exact_on_extremes

pytestmark = pytest.mark.skipif(
    not screen_available(), reason="no exact integer product kernel on this machine"
)


def _hard_corpus(n: int, d: int, seed: int) -> np.ndarray:
    """Near-duplicates, exact copies, an outlying dimension and a zero-ish row."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[n // 2 : n // 2 + n // 4] = X[: n // 4] + 1e-5 * rng.standard_normal(
        (n // 4, d)
    ).astype(np.float32)
    X[-7:] = X[:7]
    X[3, 0] = 40.0  # one large value stretches a dimension's step
    X = l2_normalize(X)
    X[5] *= 1e-3  # not unit length: the bound must not assume it
    return X


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores.view(np.int32), b.scores.view(np.int32))


@pytest.mark.parametrize("d", [7, 64, 384])
def test_bound_holds_for_every_pair(d):
    """|canonical - estimate| <= the margin, for every (query, row) pair."""
    C = _hard_corpus(600, d, seed=d)
    rng = np.random.default_rng(1)
    Q = np.vstack(
        [
            C[rng.integers(0, 600, 40)] + 0.01 * rng.standard_normal((40, d)),
            100 * rng.standard_normal((5, d)),  # large, non-unit queries
            np.zeros((1, d)),
        ]
    ).astype(np.float32)
    screen = build_screen(C)
    enc = screen.encode(Q)
    U, units = enc.codes, enc.units
    product = np.empty((len(Q), len(C)), dtype=np.int32)
    screen.product(U, 0, len(C), product)
    want = (U.astype(np.int64) - _ZERO_POINT) @ screen.codes.T.astype(np.int64)
    np.testing.assert_array_equal(product, want)  # the integer product is exact
    W = Q.astype(np.float64) * screen.step
    peak = np.abs(W).max(axis=1)
    s_q = np.where(peak > 0, peak / 127.0, 1.0)
    exact = Q.astype(np.float64) @ C.T.astype(np.float64)
    estimate = (Q.astype(np.float64) @ screen.zero)[:, None] + s_q[:, None] * product
    assert (np.abs(exact - estimate) <= units[:, None] * s_q[:, None]).all()


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 900),
    k=st.integers(1, 12),
    n_q=st.integers(1, 90),
    exclude_self=st.booleans(),
    n_jobs=st.sampled_from([1, 2]),
    budget=st.sampled_from([4096, 2**16, 2**23]),
)
def test_screened_search_equals_float_search(n, k, n_q, exclude_self, n_jobs, budget):
    C = _hard_corpus(max(n, 8), 24, seed=n)
    rng = np.random.default_rng(n_q)
    if exclude_self:
        Q, offset = C[:n_q], 0
    else:
        Q = l2_normalize(C[rng.integers(0, len(C), n_q)] + 0.02 * rng.random((n_q, 24)))
        offset = None
    kwargs = dict(self_offset=offset, memory_budget=budget, n_jobs=n_jobs)
    screened = top_k(Q, C, k, screen=build_screen(C), **kwargs)
    _same(screened, top_k(Q, C, k, screen=False, **kwargs))


def test_screen_with_exclusions_and_ties():
    """Rows with many exact copies: ties broken by index, exclusions honoured."""
    rng = np.random.default_rng(3)
    base = l2_normalize(rng.standard_normal((40, 32)).astype(np.float32))
    C = np.repeat(base, 30, axis=0)  # 1,200 rows, each value 30 times
    Q = base[:20]
    exclude = [rng.choice(len(C), 50, replace=False) for _ in range(len(Q))]
    screened = top_k(Q, C, 45, exclude=exclude, screen=build_screen(C))
    _same(screened, top_k(Q, C, 45, exclude=exclude, screen=False))
    for row, banned in zip(screened.indices, exclude, strict=True):
        assert not np.isin(row, banned).any()


def test_screened_batches_are_bit_identical():
    C = _hard_corpus(MIN_SCREEN_ROWS + 500, 48, seed=4)
    Q = l2_normalize(C[::50] + 0.01)
    screen = build_screen(C)
    whole = top_k(Q, C, 7, screen=screen)
    for size in (1, 13, 64):
        parts = [
            top_k(Q[i : i + size], C, 7, screen=screen) for i in range(0, len(Q), size)
        ]
        np.testing.assert_array_equal(
            np.vstack([p.indices for p in parts]), whole.indices
        )
        np.testing.assert_array_equal(
            np.vstack([p.scores for p in parts]), whole.scores
        )


def test_estimator_keeps_its_screen_and_results_do_not_change():
    C = _hard_corpus(MIN_SCREEN_ROWS + 100, 32, seed=5)
    Q = l2_normalize(C[:200] + 0.02)
    nn = DotProductNeighbors(n_neighbors=5, normalize=False).fit(C)
    few = nn.kneighbors(Q[:3])  # below the screen's batch size: float path
    assert nn._store._screen is None
    many = nn.kneighbors(Q)
    assert nn._store._screen is not False and nn._store._screen is not None
    np.testing.assert_array_equal(many[1][:3], few[1])
    np.testing.assert_array_equal(many[0][:3], few[0])
    want = top_k(Q, C, 5, screen=False)
    np.testing.assert_array_equal(many[1], want.indices)
    # Not pickled (rebuilt on demand) and dropped when refitted on other rows.
    assert pickle.loads(pickle.dumps(nn))._store._screen is None
    nn.fit(C[::-1].copy())
    assert nn._store._screen is None
    np.testing.assert_array_equal(
        nn.kneighbors(Q)[1], top_k(Q, C[::-1].copy(), 5, screen=False).indices
    )


def test_screen_of_another_corpus_is_refused():
    C = _hard_corpus(300, 16, seed=6)
    with pytest.raises(ValueError, match="screen was built for a 300 x 16"):
        top_k(C[:5], C[:200], 3, screen=build_screen(C))


def test_memory_mapped_corpus_gets_no_screen(tmp_path):
    C = _hard_corpus(500, 16, seed=7)
    path = tmp_path / "rows.f32"
    C.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=C.shape)
    assert build_screen(mapped) is None  # its codes would hold the file in memory


class _SaturatingKernel:
    """An integer kernel that adds products in pairs into int16 (x86 without VNNI)."""

    def run(self, _outputs, feeds):
        A = feeds["A"].astype(np.int64)
        B = feeds["B"].astype(np.int64)
        products = A[:, :, None] * B[None, :, :]  # raw uint8 x int8, as vpmaddubsw
        pairs = np.clip(products[:, 0::2] + products[:, 1::2], -32768, 32767)
        total = pairs.sum(axis=1) - feeds["Z"].astype(np.int64) * B.sum(axis=0)
        return [total.astype(np.int32)]


class _ExactKernel(_SaturatingKernel):
    def run(self, _outputs, feeds):
        A = feeds["A"].astype(np.int64) - feeds["Z"].astype(np.int64)
        return [(A @ feeds["B"].astype(np.int64)).astype(np.int32)]


def test_probe_refuses_a_saturating_kernel():
    assert _exact_on_extremes(_ExactKernel())
    assert not _exact_on_extremes(_SaturatingKernel())
