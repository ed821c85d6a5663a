"""Label names, descriptions and their embeddings for
:class:`~embedtasks.NearestLabelClassifier` (zero-shot, or a prior for examples)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from embedtasks._kernel import l2_normalize
from embedtasks._validation import check_is_fitted


def label_names(labels: Any, descriptions: Any) -> list[Any] | None:
    """The labels given for zero-shot use (from ``labels`` or the keys of a
    ``descriptions`` dict), or None."""
    if labels is not None:
        names = list(np.asarray(labels, dtype=object).ravel())
        if not names:
            raise ValueError("labels is empty; pass at least one class label.")
        return names
    if isinstance(descriptions, Mapping):
        return list(descriptions)
    if descriptions is not None:
        raise ValueError(
            "label_descriptions is a list, so it needs labels= to say which "
            "label each description belongs to (or pass a dict {label: text})."
        )
    return None


def index_of(classes: np.ndarray, values: Any, *, what: str) -> np.ndarray:
    """Positions of ``values`` in the sorted ``classes``; unknown values raise."""
    values = np.asarray(values, dtype=classes.dtype)
    idx = np.searchsorted(classes, values)
    idx = np.minimum(idx, classes.shape[0] - 1)
    unknown = classes[idx] != values
    if unknown.any():
        missing = np.unique(values[unknown])[:5].tolist()
        raise ValueError(
            f"{what} holds labels that are not in labels: {missing}. Add them "
            f"to labels= (known: {classes[:5].tolist()}"
            f"{'...' if classes.shape[0] > 5 else ''})."
        )
    return idx


def label_texts(
    classes: np.ndarray, labels: Any, descriptions: Any, template: str
) -> list[str]:
    """The text embedded for each class: its description (or name) in
    ``template``."""
    if "{label}" not in template:
        raise ValueError(
            f"template must contain '{{label}}', got {template!r}. For "
            "example: 'A question about {label}'."
        )
    if descriptions is not None and not isinstance(descriptions, Mapping):
        if len(descriptions) != len(labels):
            raise ValueError(
                f"label_descriptions has {len(descriptions)} texts but labels "
                f"has {len(labels)} entries; give one description per "
                "label, or a dict {label: text}."
            )
        names = label_names(labels, descriptions) or []
        descriptions = dict(zip(names, descriptions, strict=True))
    if descriptions is not None:
        index_of(classes, list(descriptions), what="label_descriptions")
        descriptions = {
            np.asarray(k, dtype=classes.dtype).item(): v
            for k, v in descriptions.items()
        }
    texts = []
    for label in classes:
        key = label.item() if isinstance(label, np.generic) else label
        text = str(key) if descriptions is None else descriptions.get(key, key)
        texts.append(template.format(label=text))
    return texts


def embed_labels(embedder: Any, texts: list[str]) -> np.ndarray:
    """Unit embeddings of the label ``texts`` by ``embedder`` (a fitted one is
    used as is, an unfitted one is cloned and fitted on them)."""
    if embedder is None:
        raise ValueError(
            "NearestLabelClassifier got labels or label_descriptions but no "
            "embedder to embed them. Pass embedder= (the transformer that "
            "embedded X, e.g. LocalEmbedder()), or drop labels= and fit on "
            "labelled examples."
        )
    try:
        check_is_fitted(embedder)
    except NotFittedError:
        embedder = clone(embedder).fit(texts)
    Z = np.asarray(embedder.transform(texts), dtype=np.float32)
    if Z.ndim != 2 or Z.shape[0] != len(texts) or not np.isfinite(Z).all():
        raise ValueError(
            f"The embedder must map {len(texts)} label texts to a finite "
            f"(n_texts, n_features) array; got shape {Z.shape}."
        )
    return l2_normalize(Z)
