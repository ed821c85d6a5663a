"""separating_threshold: the valley between unrelated neighbours and near-copies."""

from __future__ import annotations

import numpy as np
import pytest

from embedtasks._kernel import separating_threshold


def _mixture(n_unrelated=2000, n_copies=500, centre=0.5, seed=0):
    rng = np.random.default_rng(seed)
    unrelated = np.clip(rng.normal(centre, 0.08, n_unrelated), -1, 0.99)
    copies = 1 - np.abs(rng.normal(0, 0.05, n_copies))
    return unrelated, copies


@pytest.mark.parametrize("n_copies", [30, 500, 4000])
def test_threshold_sits_above_unrelated_rows_and_below_copies(n_copies):
    unrelated, copies = _mixture(n_copies=n_copies)
    found = separating_threshold(np.concatenate([copies, unrelated]))
    assert found.valley is not None and 0.6 < found.valley < 0.95
    # 98.5% of the unrelated rows stay below; nearly every copy is above
    assert (unrelated >= found.threshold).mean() <= 0.016
    assert (copies >= found.threshold).mean() >= 0.99
    assert found.near_share == pytest.approx(n_copies / (n_copies + 2000), abs=0.02)


def test_no_valley_gives_the_cap():
    unrelated, _ = _mixture()
    assert separating_threshold(unrelated) == (0.95, None, 0.0)
    # one-line texts: unrelated neighbours as similar as copies, one mode near 1
    rng = np.random.default_rng(1)
    dense = 1 - np.abs(rng.normal(0, 0.06, 3000))
    assert separating_threshold(dense).threshold == 0.95
    assert separating_threshold(dense, cap=0.9).threshold == 0.9
    # too few rows, NaN and inf ignored
    assert separating_threshold([0.2, 0.99, np.nan]).threshold == 0.95
    unrelated, copies = _mixture(seed=2)
    values = np.concatenate([unrelated, copies, [np.nan, -np.inf]])
    assert separating_threshold(values).threshold < 0.9


def test_a_tiny_bump_in_the_tail_is_not_a_valley():
    # 0.2% of rows far below the bulk (a few odd rows) must not set the threshold
    rng = np.random.default_rng(4)
    bulk = 1 - np.abs(rng.normal(0, 0.05, 5000))
    odd = rng.normal(0.3, 0.02, 10)
    assert separating_threshold(np.concatenate([bulk, odd])).threshold == 0.95
