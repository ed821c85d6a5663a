# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Search
#
# Natural-language search over a corpus with `DotProductNeighbors`: exact top-k by
# cosine similarity.
#
# The corpus is real text that every machine has: the one-line summaries of the
# docstrings of installed packages (numpy, pandas, scikit-learn, httpx and parts of
# the standard library), labelled by the package they come from
# (`embedtasks.demo.build_corpus`). It is embedded offline by the bundled
# all-MiniLM-L6-v2 model; vectors are cached on disk, so a second run embeds nothing.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from embedtasks import LocalEmbedder
from embedtasks.demo import build_corpus

corpus = build_corpus(800, cache_dir="default")  # docstring summaries, by package
embedder = LocalEmbedder(progress=False)  # bundled all-MiniLM-L6-v2, offline, cached
X = embedder.fit_transform(corpus["text"])
print(X.shape, X.dtype)
corpus.sample(5, random_state=0)

# %% [markdown]
# ## One pipeline, from raw text to results
# `pipe.fit(texts, ids)`: the second argument labels the hits.

# %%
from sklearn.pipeline import make_pipeline

from embedtasks import DotProductNeighbors, search_pipeline
from embedtasks.demo import DEMO_QUERIES

pipe = make_pipeline(embedder, DotProductNeighbors(n_neighbors=3))
pipe.fit(corpus["text"], corpus["name"])
hits = search_pipeline(pipe, list(DEMO_QUERIES))
hits["query"] = np.asarray(DEMO_QUERIES)[hits["query"]]
hits.merge(corpus[["text"]], left_on="index", right_index=True)

# %% [markdown]
# ## How similar is a good hit?
# The best hit of each query against the similarity of random pairs: the gap is what
# makes search work. Scores are cosines, so they are comparable across queries.

# %%
nn = pipe[-1]
queries = embedder.transform(list(DEMO_QUERIES))
best = nn.search(queries, n_neighbors=1)[0].ravel()
rng = np.random.default_rng(0)
i, j = rng.integers(0, len(X), (2, 5000))
random_pairs = np.einsum("ij,ij->i", X[i], X[j])
nearest = nn.search(n_neighbors=1)[0].ravel()  # every item vs the others

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.hist(random_pairs, bins=50, alpha=0.6, density=True, label="random pairs")
ax.hist(nearest, bins=50, alpha=0.6, density=True, label="each item's nearest item")
for b in best:
    ax.axvline(b, color="black", linewidth=1)
ax.set(
    xlabel="cosine similarity",
    ylabel="density",
    title="Similarity (lines: top hit of each query)",
)
ax.legend()
plt.show()

# %% [markdown]
# ## Filtering: skip what the user has already seen
# `exclude[i]` lists rows query `i` must not return.

# %%
first = nn.search(queries[:1], n_neighbors=3)[1][0]
scores, indices = nn.search(queries[:1], n_neighbors=3, exclude=[first])
assert not set(indices[0]) & set(first)
corpus.iloc[indices[0]][["text", "name"]]

# %% [markdown]
# ## Agreement with scikit-learn
# The same neighbours as `NearestNeighbors(metric="cosine")`, exactly.

# %%
from sklearn.neighbors import NearestNeighbors

ref = NearestNeighbors(n_neighbors=5, algorithm="brute", metric="cosine").fit(X)
ours = DotProductNeighbors(n_neighbors=5).fit(X)
same = (
    ref.kneighbors(queries, return_distance=False)
    == ours.kneighbors(queries, return_distance=False)
).mean()
print(f"identical neighbours: {same:.0%}")
