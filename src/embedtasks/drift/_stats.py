"""The numbers behind DriftTest: the permutation test, intervals, merged clusters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedtasks._kernel import group_sum, l2_normalize, similarity

#: Permutations per block (bounds the memory of one block to ~n_rows * k * 128 B).
_PERMUTATION_BLOCK = 128


@dataclass(frozen=True)
class _Permutation:
    statistic: float
    p_value: float
    null_mean: float
    null_std: float
    std_error: float


def _statistics(labels, neighbours, k):
    """Separation and its independent-rows variance for each labelling.

    ``labels`` has shape (n_labellings, n_rows), 1 for new rows.
    """
    new_count = labels[:, neighbours].sum(axis=2, dtype=np.int32)
    share = new_count / k
    is_new = labels.astype(bool)
    n_new = is_new.sum(axis=1)
    n_ref = labels.shape[1] - n_new
    sums = {}
    for name, mask in (("new", is_new), ("ref", ~is_new)):
        s1 = np.where(mask, share, 0.0).sum(axis=1)
        s2 = np.where(mask, share**2, 0.0).sum(axis=1)
        sums[name] = (s1, s2)
    mean_new = sums["new"][0] / np.maximum(n_new, 1)
    mean_ref = sums["ref"][0] / np.maximum(n_ref, 1)
    var_new = sums["new"][1] / np.maximum(n_new, 1) - mean_new**2
    var_ref = sums["ref"][1] / np.maximum(n_ref, 1) - mean_ref**2
    independent = np.sqrt(
        np.maximum(var_new, 0) / np.maximum(n_new, 1)
        + np.maximum(var_ref, 0) / np.maximum(n_ref, 1)
    )
    return mean_new - mean_ref, independent


def permutation_test(neighbours, is_new, n_permutations, rng):
    """Permutation p-value of the separation, and its standard error.

    Each permutation relabels the pooled rows and recomputes the whole statistic
    on the same graph. The standard error is the independent-rows one scaled by
    the design effect of the neighbour graph (shared and mutual neighbours make
    rows' shares covary), measured as the ratio of the permutation spread to the
    independent-rows spread under the permutations.
    """
    k = neighbours.shape[1]
    labels = is_new.astype(np.uint8)
    observed, observed_se = _statistics(labels[None, :], neighbours, k)
    null, null_se = [], []
    for start in range(0, n_permutations, _PERMUTATION_BLOCK):
        size = min(_PERMUTATION_BLOCK, n_permutations - start)
        block = rng.permuted(np.broadcast_to(labels, (size, labels.size)), axis=1)
        stat, se = _statistics(block, neighbours, k)
        null.append(stat)
        null_se.append(se)
    null_stats, null_ses = np.concatenate(null), np.concatenate(null_se)
    t = float(observed[0])
    # counts ties as reaching the observed value (a conservative, valid p-value)
    tolerance = 1e-12 * max(1.0, abs(t))
    reached = int(np.count_nonzero(null_stats >= t - tolerance))
    null_std = float(null_stats.std()) if null_stats.size > 1 else 0.0
    mean_se = float(null_ses.mean())
    design_effect = max(1.0, null_std / mean_se) if mean_se > 0 else 1.0
    return _Permutation(
        statistic=t,
        p_value=(1 + reached) / (1 + n_permutations),
        null_mean=float(null_stats.mean()),
        null_std=null_std,
        std_error=float(observed_se[0]) * design_effect,
    )


def growth_z(count_new, n_new, count_ref, n_ref):
    """Standardised share difference (pooled two-proportion z), 0 where empty."""
    count_new, count_ref = np.asarray(count_new, float), np.asarray(count_ref, float)
    pooled = (count_new + count_ref) / (n_new + n_ref)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_new + 1 / n_ref))
    diff = count_new / n_new - count_ref / n_ref
    return np.divide(diff, se, out=np.zeros_like(se), where=se > 0)


def merge_changed(pooled, labels, is_new):
    """Merge neighbouring clusters that grew (or shrank) together.

    k-means cuts a new topic wherever its rows fall, often in two neighbours
    with half the growth each. So, repeatedly, each cluster and the one with the
    nearest centre are merged where the union's change is stronger evidence (a
    larger ``|z|``, same sign) than either part's, strongest first. Returns the
    labels, centres and the number of clusters examined (for Bonferroni).
    """
    leaves, labels = np.unique(labels, return_inverse=True)  # drops empty ones
    owner = np.arange(leaves.size)  # k-means cluster -> merged cluster
    n_new, n_ref = is_new.sum(), (~is_new).sum()
    leaf_new = np.bincount(labels[is_new], minlength=leaves.size)
    leaf_ref = np.bincount(labels[~is_new], minlength=leaves.size)
    leaf_sum = group_sum(pooled, labels, leaves.size)  # unit rows, once
    examined = set()
    while n_new and n_ref:
        n_found = owner.max() + 1
        centres = l2_normalize(group_sum(leaf_sum, owner, n_found))
        cn = np.bincount(owner, leaf_new, n_found)
        cr = np.bincount(owner, leaf_ref, n_found)
        near = similarity(centres, centres)
        np.fill_diagonal(near, -np.inf)
        pairs = np.unique(np.sort([np.arange(n_found), near.argmax(1)], 0), axis=1)
        a, b = pairs[:, pairs[0] < pairs[1]]
        z = growth_z(cn, n_new, cr, n_ref)
        merged = growth_z(cn[a] + cn[b], n_new, cr[a] + cr[b], n_ref)
        for pair in zip(a, b, strict=True):
            examined.add(frozenset(np.flatnonzero(np.isin(owner, pair))))
        gain = (np.sign(z[a]) == np.sign(z[b])) & (
            np.abs(merged) > np.maximum(np.abs(z[a]), np.abs(z[b]))
        )
        if not gain.any():
            break
        best = np.flatnonzero(gain)[np.argmax(np.abs(merged[gain]))]
        owner[owner == b[best]] = a[best]
        owner[owner > b[best]] -= 1
    centres = l2_normalize(group_sum(leaf_sum, owner, owner.max() + 1))
    return owner[labels], centres, leaves.size + len(examined)


def normal_quantile(level: float) -> float:
    """Two-sided normal quantile for a confidence ``level``."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def _wilson(count, n, z):
    n = np.maximum(n, 1)
    p = count / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return p, centre - half, centre + half


def newcombe(count_a, n_a, count_b, n_b, z):
    """``p_a - p_b`` with Newcombe's hybrid score interval (his method 10)."""
    pa, la, ua = _wilson(np.asarray(count_a, dtype=float), n_a, z)
    pb, lb, ub = _wilson(np.asarray(count_b, dtype=float), n_b, z)
    diff = pa - pb
    low = diff - np.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = diff + np.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return diff, low, high
