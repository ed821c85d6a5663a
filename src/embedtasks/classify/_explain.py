"""The evidence table of :meth:`NearestLabelClassifier.explain
<embedtasks.NearestLabelClassifier.explain>`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embedtasks._kernel import similarity, top_k

COLUMNS = ["row", "kind", "label", "example", "similarity", "score"]


@dataclass(frozen=True)
class Examples:
    """The training rows sorted by class: ``rows[bounds[c]:bounds[c + 1]]`` are
    class ``c``'s, and ``order`` maps a sorted position to the user's row."""

    rows: np.ndarray
    bounds: np.ndarray
    order: np.ndarray


def label_evidence(
    Q: np.ndarray, S: np.ndarray, labels: Any, classes: np.ndarray, n_best: int
) -> list[dict[str, Any]]:
    """Zero-shot: the ``n_best`` labels of each row, raw and corrected."""
    k = min(n_best, S.shape[1])
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    raw = similarity(Q, labels)
    rows = np.repeat(np.arange(S.shape[0]), k)
    cls = order.ravel()
    return [
        dict(
            row=rows,
            kind="label",
            label=classes[cls],
            example=np.full(rows.size, -1),
            similarity=raw[rows, cls],
            score=S[rows, cls],
        )
    ]


def example_evidence(
    Q: np.ndarray,
    S: np.ndarray,
    examples: Examples,
    labels: Any,
    classes: np.ndarray,
    n_examples: int,
) -> list[dict[str, Any]]:
    """With examples: the nearest training rows of the predicted class (and the
    similarity to its label, when labels were given)."""
    best = S.argmax(axis=1)
    parts = []
    for c in np.unique(best):
        queries = np.flatnonzero(best == c)
        lo, hi = examples.bounds[c], examples.bounds[c + 1]
        if hi > lo:
            found = top_k(Q[queries], examples.rows[lo:hi], n_examples, n_jobs=1)
            hit = found.indices >= 0
            rows = np.repeat(queries, hit.sum(axis=1))
            parts.append(
                dict(
                    row=rows,
                    kind="example",
                    label=classes[np.full(rows.size, c)],
                    example=examples.order[lo + found.indices[hit]],
                    similarity=found.scores[hit],
                    score=S[rows, c],
                )
            )
        if labels is not None:
            sim = similarity(Q[queries], labels[c : c + 1])
            parts.append(
                dict(
                    row=queries,
                    kind="label",
                    label=classes[np.full(queries.size, c)],
                    example=np.full(queries.size, -1),
                    similarity=sim[:, 0],
                    score=S[queries, c],
                )
            )
    return parts


def evidence_table(
    pd: Any,
    parts: list[dict[str, Any]],
    S: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
) -> Any:
    """One DataFrame, by row: examples first (most similar first), then labels."""
    best = S.argmax(axis=1)
    frame = pd.concat(
        [pd.DataFrame(part, columns=COLUMNS) for part in parts]
        or [pd.DataFrame(columns=COLUMNS)],
        ignore_index=True,
    )
    rows = frame["row"].to_numpy(dtype=np.intp)
    frame.insert(1, "prediction", classes[best[rows]])
    frame.insert(2, "probability", proba[rows, best[rows]])
    frame["example"] = frame["example"].astype(np.int64)
    frame["similarity"] = frame["similarity"].astype(np.float32)
    kind_order = frame["kind"].map({"label": 1, "example": 0})
    frame = frame.assign(_k=kind_order.to_numpy())
    frame = frame.sort_values(
        ["row", "_k", "similarity"], ascending=[True, True, False], kind="stable"
    )
    return frame.drop(columns="_k").reset_index(drop=True)
