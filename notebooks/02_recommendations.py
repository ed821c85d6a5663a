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
# # Recommendations
#
# "More like this": the query is an item (or several) of the collection, never
# recommended back.
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

# %%
from embedtasks import DotProductNeighbors

nn = DotProductNeighbors(n_neighbors=8).fit(X, corpus["name"])


def show(frame):
    return frame.merge(corpus[["text", "label"]], left_on="index", right_index=True)


item = int(np.flatnonzero(corpus["label"] == "logging")[0])
print("more like:", corpus.loc[item, "text"])
show(nn.recommend(item, as_frame=True))

# %% [markdown]
# ## Several liked items, some excluded
# The liked items are combined (normalised mean), and none of them comes back.

# %%
liked = np.flatnonzero(corpus["label"] == "asyncio")[:3].tolist()
print("liked:", *corpus.loc[liked, "text"], sep="\n  ")
recs = show(nn.recommend(liked, exclude=liked, as_frame=True))
assert not set(recs["index"]) & set(liked)
recs

# %% [markdown]
# ## Diversified with maximal marginal relevance
# With `diversity > 0` each pick balances similarity to the query against similarity
# to the picks so far. The plot shows how the average similarity among the
# recommendations falls (more variety) while relevance falls more slowly.

# %%
levels = [0.0, 0.2, 0.4, 0.6, 0.8]
relevance, redundancy = [], []
for level in levels:
    scores, idx = nn.recommend(liked, n_neighbors=8, diversity=level)
    sims = X[idx] @ X[idx].T
    relevance.append(scores.mean())
    redundancy.append(sims[np.triu_indices(len(idx), 1)].mean())

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(levels, relevance, marker="o", label="mean similarity to the query")
ax.plot(levels, redundancy, marker="o", label="mean similarity among the picks")
ax.set(xlabel="diversity", ylabel="cosine similarity", title="MMR trade-off")
ax.legend()
plt.show()
show(nn.recommend(liked, diversity=0.5, as_frame=True))
