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
# # Clustering
#
# `EmbeddingClusterer` reduces the embeddings (UMAP when installed, PCA otherwise)
# and runs HDBSCAN: it finds the number of groups itself and leaves outliers as
# noise (`-1`).
#
# The corpus is real text that every machine has: the one-line summaries of the
# docstrings of installed packages (numpy, pandas, scikit-learn, httpx and parts of
# the standard library), labelled by the package they come from
# (`embedtasks.demo.build_corpus`). It is embedded offline by the bundled
# all-MiniLM-L6-v2 model; vectors are cached on disk, so a second run embeds nothing.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from embedtasks import LocalEmbedder
from embedtasks.demo import build_corpus

CACHE = Path(os.environ.get("EMBEDTASKS_CACHE_DIR", Path.home() / ".cache/embedtasks"))
corpus = build_corpus(800, cache_dir=CACHE)  # docstring summaries, by package
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
# keywords are c-TF-IDF (frequent in the cluster, rare elsewhere).

# %%
summary = clusterer.summary(corpus["text"], n_keywords=6)
summary["representative"] = summary["representative_texts"].str[0]
pd.set_option("display.max_colwidth", 80)
summary[["cluster", "size", "keywords", "representative"]]

# %% [markdown]
# ## A cluster map
# The first two dimensions of the space that was clustered (`embedding_`), coloured
# by cluster (grey: noise), beside the same map coloured by package.

# %%
emb = clusterer.embedding_
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
noise = labels == -1
left.scatter(emb[noise, 0], emb[noise, 1], s=6, c="lightgrey")
left.scatter(emb[~noise, 0], emb[~noise, 1], s=6, c=labels[~noise], cmap="tab20")
for row in summary.itertuples():
    x, y = np.median(emb[labels == row.cluster, :2], axis=0)
    left.annotate(", ".join(row.keywords[:2]), (x, y), fontsize=8, weight="bold")
left.set_title("clusters")
for name in corpus["label"].unique():
    mask = (corpus["label"] == name).to_numpy()
    right.scatter(emb[mask, 0], emb[mask, 1], s=6, label=name)
right.legend(markerscale=3, fontsize=7)
right.set_title("packages")
plt.show()

# %% [markdown]
# ## Placing new texts

# %%
new = ["create a new event loop", "add a column to a data frame", "send a GET request"]
predicted = clusterer.predict(embedder.transform(new))
pd.DataFrame({"text": new, "cluster": predicted}).merge(
    summary[["cluster", "keywords"]], on="cluster", how="left"
)
