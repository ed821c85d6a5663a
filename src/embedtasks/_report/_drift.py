"""The report's drift section: how the corpus differs from a reference corpus.

Lays out a :class:`~embedtasks.DriftResult` as HTML (verdict, the clusters that
grew or shrank, the new rows least like the reference); computes nothing.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["drift_section"]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _cut(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def drift_section(result: Any, *, max_text_chars: int = 300) -> str:
    """The ``<section id="drift">`` of the page for ``result``."""
    low, high = result.confidence_interval
    verdict = (
        "differs from the reference"
        if result.drifted
        else "shows no evidence of differing from the reference"
    )
    floor = 1 / (result.n_permutations + 1)
    p_text = f"≤ {floor:.2g}" if result.p_value <= floor else f"{result.p_value:.3g}"
    head = (
        f'<p class="verdict"><b>This corpus {_e(verdict)}</b> '
        f"(p = {_e(p_text)}, alpha {result.alpha:g}; {result.n_reference:,} reference "
        f"rows vs {result.n_new:,} rows tested).</p>"
        f'<p class="note">Separation {result.statistic:.3f} '
        f"({result.confidence:.0%} interval {low:.3f} to {high:.3f}; 0 when both "
        "corpora come from one distribution, 1 when no row has a neighbour in the "
        f"other): how much more often a row's {result.n_neighbors} most similar rows "
        "come from its own corpus than chance gives. Cluster intervals hold together "
        f"at {result.confidence:.0%}.</p>"
    )
    rows = []
    for record in result.clusters.to_dict("records"):
        rows.append(
            f"<tr><td>{_e(record['name'])}</td><td>{_e(record['change'])}</td>"
            f'<td class="num">{record["share_reference"]:.1%}</td>'
            f'<td class="num">{record["share_new"]:.1%}</td>'
            f'<td class="num">{record["difference"]:+.1%}</td>'
            f'<td class="num">{record["ci_low"]:+.1%} to {record["ci_high"]:+.1%}</td>'
            "</tr>"
        )
    clusters = _table(
        ["cluster", "change", "reference", "this corpus", "difference", "interval"],
        rows,
    )
    rows = []
    for record in result.examples.to_dict("records"):
        row = int(record["index"])
        text = _cut(record.get("text", ""), max_text_chars)
        nearest = _cut(record.get("nearest_reference_text", ""), max_text_chars)
        rows.append(
            f'<tr class="pick" data-rows="{row}"><td class="num">{row}</td>'
            f'<td class="num">{record["score"]:.2f}</td><td>{_e(text)}</td>'
            f'<td class="num">{record["reference_similarity"]:.3f}</td>'
            f"<td>{_e(nearest)}</td></tr>"
        )
    examples = _table(
        ["row", "score", "text", "similarity", "most similar reference text"], rows
    )
    return (
        '<section id="drift"><h2>Drift from the reference</h2>'
        f'{head}<div class="scroll">{clusters}</div>'
        '<h3>Rows least like the reference</h3><p class="note">Score: the share of a '
        "row's most similar rows that come from this corpus.</p>"
        f'<div class="scroll">{examples}</div></section>'
    )
