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
# # A tour of embedtasks
#
# Every task of the library, one cell each.
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
# ## Search
# A Pipeline from raw text to ranked results; the names given as `y` label the hits.

# %%
from sklearn.pipeline import make_pipeline

from embedtasks import DotProductNeighbors, search_pipeline

search = make_pipeline(embedder, DotProductNeighbors(n_neighbors=3))
search.fit(corpus["text"], corpus["name"])
search_pipeline(search, ["solve a system of linear equations", "parse an email header"])

# %% [markdown]
# ## Recommendations: more like this one (itself excluded), diversified

# %%
nn = search[-1]
item = int(np.flatnonzero(corpus["label"] == "pandas")[0])
print("liked:", corpus.loc[item, "text"])
recs = nn.recommend(item, n_neighbors=5, diversity=0.3, as_frame=True)
recs.merge(corpus[["text", "label"]], left_on="index", right_index=True)

# %% [markdown]
# ## Clustering

# %%
from embedtasks import EmbeddingClusterer

clusterer = EmbeddingClusterer(min_cluster_size=15, random_state=0).fit(X)
print(f"{clusterer.n_clusters_} clusters, {np.mean(clusterer.labels_ == -1):.0%} noise")
clusterer.summary(corpus["text"])[["name", "size", "keywords"]].head(8)

# %%
ax = clusterer.plot_map(corpus["text"])  # the 2-D map: clusters named, noise grey

# %% [markdown]
# ## Anomaly detection: the docstrings least like any other

# %%
from embedtasks import OutlierScorer

scorer = OutlierScorer().fit(X)
odd = np.argsort(scorer.training_scores_)[:5]
corpus.iloc[odd][["text", "label"]]

# %% [markdown]
# ## Diversity per package

# %%
from embedtasks import DiversityReport

report = DiversityReport(random_state=0).fit(X, groups=corpus["label"])
report.to_frame()[["n_samples", "mean_similarity", "vendi_score"]].round(2)

# %% [markdown]
# ## Classification: zero-shot from label descriptions vs supervised

# %%
from sklearn.model_selection import train_test_split

from embedtasks import NearestLabelClassifier
from embedtasks.demo import LABEL_DESCRIPTIONS

X_train, X_test, y_train, y_test = train_test_split(
    X, corpus["label"], test_size=0.5, stratify=corpus["label"], random_state=0
)
zero_shot = NearestLabelClassifier(
    embedder=embedder, label_descriptions=LABEL_DESCRIPTIONS
).fit(X_train)
supervised = NearestLabelClassifier().fit(X_train, y_train)
print(
    f"zero-shot accuracy {zero_shot.score(X_test, y_test):.2f}, "
    f"supervised {supervised.score(X_test, y_test):.2f} (10 classes)"
)
