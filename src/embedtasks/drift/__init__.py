"""Did my data change? A two-sample test between two sets of embeddings.

:class:`DriftTest` is fitted on a reference set (last month's data, the training
set) and tests a new set against it. It answers with a p-value, an effect size
with a confidence interval, the clusters of the pooled data whose share grew or
shrank, and the new rows least like the reference.

**The test** is the nearest-neighbour two-sample test (Schilling 1986; Henze
1988). Every row of the pooled data gets its ``k`` most similar other rows,
exactly, from the shared top-k kernel; if both sets come from one distribution, a
row's neighbours come from either set by chance alone, and where the new data
holds something the reference lacks, new rows have new neighbours. The statistic
is ``mean_new(share of new neighbours) - mean_reference(share of new
neighbours)``: 0 when the sets are alike, 1 when no row has a neighbour from the
other set. Its p-value comes from a permutation test: the set labels are shuffled
over the pooled rows and *the whole statistic* is recomputed on the same
neighbour graph, which does not depend on the labels (the pooled rows are put in
a random order first, so that even ties between exact copies are broken
independently of the labels). Under the null hypothesis (the two sets are random
draws from one distribution) the labels are exchangeable, so the p-value is valid
exactly, whatever the number of rows, their dimension or near-copies inside a
corpus: ``P(p <= alpha) <= alpha``.

Why not a classifier's AUC or MMD? A valid permutation test of a cross-fitted
classifier refits every fold per permutation; MMD needs a bandwidth and a
quadratic number of kernel evaluations per permutation (see the drift guide).
The neighbour graph is built once, each permutation is a gather over ``n * k``
edges, and the same neighbours say *which* new rows have no reference nearby.
"""

from __future__ import annotations

from embedtasks.drift._estimator import DriftResult, DriftTest

__all__ = ["DriftResult", "DriftTest"]
