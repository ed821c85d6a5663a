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
# # Classification
#
# `NearestLabelClassifier` labels each text by its most similar class: zero-shot
# from label descriptions, few-shot from a handful of examples, or from a full
# training set, with calibrated probabilities. Here: which package does a docstring
# come from?
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
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split

from embedtasks import NearestLabelClassifier
from embedtasks.demo import LABEL_DESCRIPTIONS

y = corpus["label"].to_numpy()
texts = corpus["text"].to_numpy()
X_train, X_test, y_train, y_test, text_train, text_test = train_test_split(
    X, y, texts, test_size=0.5, stratify=y, random_state=0
)
pd.Series(LABEL_DESCRIPTIONS, name="description").to_frame()

# %% [markdown]
# ## Zero-shot, few-shot, full

# %%
zero_shot = NearestLabelClassifier(
    embedder=embedder, label_descriptions=LABEL_DESCRIPTIONS
).fit(X_train)

rng = np.random.default_rng(0)
few = np.concatenate(
    [rng.choice(np.flatnonzero(y_train == c), 8, replace=False) for c in np.unique(y)]
)
few_shot = NearestLabelClassifier().fit(X_train[few], y_train[few])
both = NearestLabelClassifier(
    embedder=embedder, label_descriptions=LABEL_DESCRIPTIONS, prior_weight=2.0
).fit(X_train[few], y_train[few])
full = NearestLabelClassifier().fit(X_train, y_train)  # method="auto"

results = pd.DataFrame(
    {
        "examples per class": [0, 8, 8, 40],
        "accuracy": [
            m.score(X_test, y_test) for m in (zero_shot, few_shot, both, full)
        ],
    },
    index=[
        "zero-shot (descriptions)",
        "few-shot",
        "few-shot + descriptions",
        f"full ({full.method_})",
    ],
)
results.round(3)

# %% [markdown]
# `method="auto"` chose its head by cross-validated accuracy on the training data:

# %%
pd.Series(full.cv_scores_, name="held-out accuracy").round(3)

# %% [markdown]
# ## Where it goes wrong

# %%
fig, ax = plt.subplots(figsize=(7, 6))
ConfusionMatrixDisplay.from_predictions(
    y_test, full.predict(X_test), ax=ax, xticks_rotation=45, colorbar=False
)
plt.show()

# %% [markdown]
# ## Are the probabilities honest?
# Reliability: among predictions made with confidence p, about p should be right.

# %%
proba = full.predict_proba(X_test)
confidence = proba.max(axis=1)
correct = full.classes_[proba.argmax(axis=1)] == y_test
bins = np.linspace(0, 1, 11)
which = np.clip(np.digitize(confidence, bins) - 1, 0, 9)
table = pd.DataFrame({"bin": which, "confidence": confidence, "correct": correct})
calib = table.groupby("bin").agg(
    confidence=("confidence", "mean"),
    accuracy=("correct", "mean"),
    n=("correct", "size"),
)
ece = np.sum(calib["n"] * (calib["confidence"] - calib["accuracy"]).abs()) / len(y_test)
print(f"temperature {full.temperature_:.3f}, expected calibration error {ece:.1%}")

fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
ax.plot(calib["confidence"], calib["accuracy"], marker="o")
ax.set(xlabel="confidence", ylabel="accuracy", title="Reliability")
plt.show()

# %% [markdown]
# ## Why this label?
# `explain` lists the training examples of the predicted class nearest to each
# input (`example` is the row of the few-shot training rows `X_train[few]`), and
# the label similarity when labels were given.

# %%
evidence = both.explain(X_test[:2], n_examples=2)
is_example = evidence["example"] >= 0
evidence["text"] = np.where(
    is_example, text_train[few][evidence["example"].clip(lower=0)], "(label)"
)
print(text_test[:2])
evidence
