"""Held-out near-copies of paragraph texts for ``bench_dedupe.py`` (not a test fixture).

Sources and unseen rows are Brown paragraphs (5-sentence chunks) drawn from
disjoint documents (neighbouring chunks of one document share words). Each source
gets one copy per edit: lower case, punctuation stripped, a few word edits,
boilerplate appended, truncated to 80%.
"""

from __future__ import annotations

import re
import string

import numpy as np

BOILERPLATE = (
    " Click here to subscribe to our newsletter. Copyright 2026, all rights "
    "reserved. Terms of use apply."
)
EDITS = ("casing", "punctuation", "word_edits", "boilerplate", "truncation")


def _word_edits(text: str, rng: np.random.Generator) -> str:
    words = text.split()
    for _ in range(max(1, len(words) // 40)):  # about one edit per 40 words
        i = int(rng.integers(len(words)))
        kind = int(rng.integers(3))
        if kind == 0 and len(words) > 3:
            del words[i]
        elif kind == 1 and i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
        elif len(words[i]) > 3:  # a typo: two letters swapped
            w = words[i]
            j = int(rng.integers(len(w) - 1))
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def edit(text: str, kind: str, rng: np.random.Generator) -> str:
    """One injected near-copy of ``text``."""
    if kind == "casing":
        return text.lower()
    if kind == "punctuation":
        stripped = text.translate(str.maketrans("", "", string.punctuation))
        return re.sub(r"\s+", " ", stripped).strip()
    if kind == "word_edits":
        return _word_edits(text, rng)
    if kind == "boilerplate":
        return text + BOILERPLATE
    if kind == "truncation":
        words = text.split()
        return " ".join(words[: max(1, int(round(0.8 * len(words))))])
    raise ValueError(kind)


def held_out(frame, n_sources: int, n_unseen: int, seed: int = 0):
    """(sources, unseen, copies, copy_source, copy_kind) drawn from disjoint docs."""
    rng = np.random.default_rng(seed)
    frame = frame[frame["text"].str.len() >= 200]
    docs = rng.permutation(frame["doc"].unique())
    half = len(docs) // 2
    a = frame[frame["doc"].isin(docs[:half])]
    b = frame[frame["doc"].isin(docs[half:])]
    sources = a.sample(n_sources, random_state=seed)["text"].tolist()
    unseen = b.sample(n_unseen, random_state=seed)["text"].tolist()
    copies, copy_source, copy_kind = [], [], []
    for i, text in enumerate(sources):
        for kind in EDITS:
            copies.append(edit(text, kind, rng))
            copy_source.append(i)
            copy_kind.append(kind)
    return sources, unseen, copies, np.array(copy_source), np.array(copy_kind)
