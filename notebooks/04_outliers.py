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
# # Anomaly detection
#
# `OutlierScorer` scores how unrelated each item is to the rest, with scikit-learn's
# outlier API (`score_samples`: higher is more normal; `predict`: -1 outlier, +1
# inlier).
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
# ## Novelty: texts from packages never seen in training
# Fit on eight packages, then score held-out texts of those packages and texts of
# the two left-out packages (`email`, `xml`). A good scorer ranks the newcomers as
# more unusual.

# %%
from sklearn.metrics import roc_auc_score

from embedtasks import OutlierScorer

new_kind = corpus["label"].isin(["email", "xml"]).to_numpy()
rng = np.random.default_rng(0)
known = np.flatnonzero(~new_kind)
train = rng.choice(known, size=len(known) * 3 // 4, replace=False)
held_out_known = np.setdiff1d(known, train)
test = np.concatenate([held_out_known, np.flatnonzero(new_kind)])

scorer = OutlierScorer(novelty=True).fit(X[train])
scores = scorer.decision_function(X[test])
is_new = new_kind[test]
print(f"AUROC (newcomers vs held-out known): {roc_auc_score(is_new, -scores):.3f}")

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.hist(scores[~is_new], bins=40, alpha=0.6, label="held-out, known packages")
ax.hist(scores[is_new], bins=40, alpha=0.6, label="email / xml (never seen)")
ax.axvline(0, color="black", linestyle="--", label="threshold (offset_)")
ax.set(xlabel="decision_function (negative = outlier)", ylabel="texts")
ax.legend()
plt.show()

# %% [markdown]
# ## The most unusual texts, and why
# `explain` lists each text's most similar training texts: for an outlier even the
# nearest one is not close.

# %%
order = np.argsort(scores)[:6]
why = scorer.explain(X[test][order], n_neighbors=1)
pd.DataFrame(
    {
        "text": corpus["text"].to_numpy()[test][order],
        "package": corpus["label"].to_numpy()[test][order],
        "score": scores[order].round(3),
        "nearest training text": corpus["text"].to_numpy()[train][why.indices[:, 0]],
        "similarity": why.similarities[:, 0].round(2),
    }
)

# %% [markdown]
# ## Outliers inside one collection
# Without `novelty`, `fit_predict` flags the training items themselves.

# %%
flags = OutlierScorer(contamination=0.02).fit_predict(X)
corpus.loc[flags == -1, ["text", "label"]].head(10)
