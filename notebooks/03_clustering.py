# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Clustering
#
# `EmbeddingClusterer` reduces the embeddings (UMAP on the exact neighbour graph)
# and runs HDBSCAN: it finds the number of groups itself and leaves outliers as
# noise (`-1`). It also lays the rows out on a 2-D map.
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
from sklearn.metrics import v_measure_score

from embedtasks import EmbeddingClusterer

clusterer = EmbeddingClusterer(min_cluster_size=15, random_state=0)
labels = clusterer.fit_predict(X)
print(
    f"{clusterer.n_clusters_} clusters, {np.mean(labels == -1):.0%} noise, "
    f"V-measure vs package {v_measure_score(corpus['label'], labels):.2f}"
)

# %% [markdown]
# ## What each cluster is about
# Representatives are central members that are not near-copies of each other;
# keywords are c-TF-IDF (frequent in the cluster, rare elsewhere; URL fragments and
# words common to most clusters left out; two-word phrases when they beat their
# words). Each cluster is named by its first three keywords; the last row counts
# the noise.

# %%
summary = clusterer.summary(corpus["text"], n_keywords=6)
summary["representative"] = summary["representative_texts"].str[0]
pd.set_option("display.max_colwidth", 80)
summary[["name", "size", "keywords", "representative"]]

# %% [markdown]
# ## The map
# `map_` is a 2-D layout of the rows, made from the same neighbour graph as the
# clustered space; `plot_map` colours and names the clusters (grey: noise).

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6))
clusterer.plot_map(corpus["text"], ax=left)
for name in corpus["label"].unique():
    mask = (corpus["label"] == name).to_numpy()
    right.scatter(*clusterer.map_[mask].T, s=6, label=name)
right.legend(markerscale=3, fontsize=7)
right.set_title("the same map, coloured by package")
plt.show()

# %% [markdown]
# ## Against the package labels
# `compare(y)` gives purity, V-measure and the cluster-by-label table.

# %%
comparison = clusterer.compare(corpus["label"], texts=corpus["text"])
print(comparison)
comparison.table[["name", "size", "top_label", "top_share"]].head(10)

# %% [markdown]
# ## Iterate for free, and control the noise
# The reduction is cached (in memory and under the embedtasks cache dir), so a refit
# with other HDBSCAN settings takes well under a second; `max_noise` moves the noise
# rows closest to a cluster into it until at most that share is noise.

# %%
import time

start = time.perf_counter()
clusterer.set_params(min_cluster_size=25, max_noise=0.05).fit(X)
print(
    f"refit in {time.perf_counter() - start:.2f} s: {clusterer.n_clusters_} clusters, "
    f"{np.mean(clusterer.labels_ == -1):.0%} noise, V-measure "
    f"{v_measure_score(corpus['label'], clusterer.labels_):.2f}"
)
summary = clusterer.summary(corpus["text"], n_keywords=6)

# %% [markdown]
# ## Placing new texts

# %%
new = ["create a new event loop", "add a column to a data frame", "send a GET request"]
predicted = clusterer.predict(embedder.transform(new))
pd.DataFrame({"text": new, "cluster": predicted}).merge(
    summary[["cluster", "keywords"]], on="cluster", how="left"
)
