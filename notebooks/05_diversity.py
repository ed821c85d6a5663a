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
# # Diversity
#
# `DiversityReport` summarises how varied a collection is: pairwise and
# nearest-neighbour similarity distributions, near-duplicates, and the Vendi score
# (the effective number of distinct items).
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
from embedtasks import DiversityReport

report = DiversityReport(duplicate_threshold=0.9, random_state=0)
report.fit(X, groups=corpus["label"])
report.to_frame().round(3)

# %% [markdown]
# ## Similarity histograms, per package
# Left: all pairs; right: each text's most similar other text (near 1: near-copies).

# %%
fig = report.plot()
plt.show()

# %% [markdown]
# ## Near-duplicates

# %%
pairs = report.duplicate_pairs_[:8]
pd.DataFrame(
    {
        "text A": corpus["text"].to_numpy()[pairs[:, 0]],
        "text B": corpus["text"].to_numpy()[pairs[:, 1]],
        "similarity": report.duplicate_similarities_[:8].round(3),
    }
)

# %% [markdown]
# ## Which package writes the most varied docstrings?
# The Vendi score of each package's 80 texts: the effective number of distinct
# texts (80 would mean all unrelated). Packages with many near-copies (unittest's
# assertion family, logging's handlers) score lowest, as the histograms above
# suggest.

# %%
frame = report.to_frame().drop(index="all").sort_values("vendi_score")
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.barh(frame.index, frame["vendi_score"])
ax.set(xlabel="Vendi score (effective number of distinct texts)", title="Variety")
plt.show()
frame[["n_samples", "mean_similarity", "vendi_score", "n_duplicate_pairs"]].round(3)
