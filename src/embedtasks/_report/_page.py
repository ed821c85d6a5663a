"""The HTML of :func:`embedtasks.report`: layout, styles and the page's script.

Presentation only: it receives the estimators' tables and lays them out; it
computes nothing. Every text is escaped on the way in: :func:`html.escape` in
tables, JSON with ``<``, ``>`` and ``&`` as ``\\u003c``... in the page's data (no
text can end a ``<script>``), and escaped again for plotly's hover markup.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Page", "clean_text"]

# Colours of the clusters, largest first: plotly's Dark24 without its greys, then
# colours picked greedily on an RGB grid (CIELAB lightness 30-82, chroma > 25:
# visible on white, never grey), each as far as possible from all before it; any
# two of the 64 differ by CIE76 Delta-E >= 22. Then cycled (the map names the
# largest clusters, so a repeated colour is still told apart). Noise is light
# grey and drawn first, under the clusters.
_PALETTE = tuple(
    "#2E91E5 #E15F99 #1CA71C #FB0D0D #DA16FF #B68100 #750D86 #EB663B #511CFB #00A08B "
    "#FB00D1 #FC0080 #6C7C32 #862A16 #A777F1 #620042 #1616A7 #DA60CA #6C4516 #0D2A63 "
    "#AF0038 #F0B4A5 #C3D200 #E1B4F0 #87D2F0 #00E196 #B4D2A5 #006987 #965A69 #00E100 "
    "#FFC300 #A5D269 #1E4BB4 #F0C378 #1E5A3C #8769A5 #FF8700 #006900 #FF004B #005AFF "
    "#F07878 #963CE1 #C3784B #00E1E1 #879600 #4BA55A #87E13C #B40000 #A50F78 #FFA5C3 "
    "#96A5D2 #A59669 #4B87FF #FF3CB4 #00E15A #A5A5FF #E169FF #B40FB4 #D2C34B #A54B00 "
    "#FF96E1 #69E1B4 #FFA54B #1EA5B4".split()
)
_NOISE_COLOUR = "#b4b4b4"
_WEBGL_ABOVE = 5_000  # rows: SVG markers below (crisp, light), WebGL above
_MAX_MAP_NAMES = 60  # clusters named on the map (the largest)
_VIEW_QUANTILE = 0.005  # the view spans the middle 99% of the points on each axis
_VIEW_PAD = 0.06  # and this share of that span on each side
_PLOT_PX = (1000, 600)  # about the plot area at 1,400 pixels wide (names' room)
_NAME_PX = (7.5, 20)  # a topic name's character width and line height, pixels
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str, limit: int) -> str:
    """Printable, valid UTF-8 and at most ``limit`` characters (then an ellipsis)."""
    text = _CONTROL.sub(" ", text).encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def _view(values: np.ndarray) -> list[float] | None:
    """An axis range over the middle 99% of the points, padded (None: all).

    A few far points (a stray text, an outlier) would otherwise squash the main
    cloud into a corner; they stay on the map, a pan or zoom away.
    """
    if values.size < 50:
        return None
    low, high = np.quantile(values, [_VIEW_QUANTILE, 1 - _VIEW_QUANTILE])
    span = float(high - low) or 1.0
    return [float(low) - _VIEW_PAD * span, float(high) + _VIEW_PAD * span]


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>``, ``<!--``)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return "–"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"


class Page:
    """Lays the tables out as HTML; holds no estimator logic."""

    def __init__(
        self,
        *,
        texts: list[str],
        summary: Any,
        points: Any,
        diversity: Any,
        dedupe: Any,
        groups: np.ndarray | None,
        title: str,
        ids: list[str] | None = None,
        topics: Any = None,
    ) -> None:
        self.texts = texts
        self.ids = ids
        self.summary = summary
        self.points = points
        self.diversity = diversity
        self.dedupe = dedupe
        self.groups = groups
        self.title = title
        self.labels = points["cluster"].to_numpy()
        self.names = self._names(summary, "cluster")
        # the topic view: when the topics are fewer than the clusters
        self.topics = topics
        self.topic_labels: np.ndarray | None = None
        self.topic_names: dict[int, str] = {-1: "noise"}
        if topics is not None and "topic" in points:
            n_topics = int((topics["topic"] >= 0).sum())
            if 0 < n_topics < len(self.names) - 1:
                self.topic_labels = points["topic"].to_numpy()
                self.topic_names = self._names(topics, "topic")

    def row(self, i: int) -> str:
        """How row ``i`` is named on the page: its id when ids are given."""
        return _e(self.ids[i]) if self.ids is not None else str(i)

    @staticmethod
    def _names(frame: Any, level: str) -> dict[int, str]:
        """The names of a table's clusters (or topics), noise as ``"noise"``."""
        names = {-1: "noise"}
        for record in frame.to_dict("records"):
            group = int(record[level])
            if group >= 0:
                names[group] = str(record.get("name") or f"{level} {group}")
        return names

    def colour(self, cluster: int) -> str:
        return _NOISE_COLOUR if cluster < 0 else _PALETTE[cluster % len(_PALETTE)]

    # ----------------------------------------------------------------- map
    def figure(self) -> tuple[Any, list[list[int]]]:
        """The map: a trace per cluster, then (hidden) one per topic, and the
        names of each level at its groups' centres (the topics' hidden)."""
        import plotly.graph_objects as go

        x = self.points["x"].to_numpy(dtype=np.float32)
        y = self.points["y"].to_numpy(dtype=np.float32)
        fig = go.Figure()
        members = self._level(fig, x, y, self.labels, self.names, "cluster")
        if self.topic_labels is not None:
            members += self._level(
                fig, x, y, self.topic_labels, self.topic_names, "topic"
            )
        fig.update_layout(
            template="plotly_white",
            height=620,
            margin={"l": 10, "r": 10, "t": 10, "b": 10},
            legend={"itemsizing": "constant", "y": 0.93},
            xaxis={"visible": False, "range": _view(x)},
            yaxis={"visible": False, "scaleanchor": "x", "range": _view(y)},
            hoverlabel={"align": "left"},
            dragmode="pan",
        )
        return fig, members

    def _level(
        self,
        fig: Any,
        x: np.ndarray,
        y: np.ndarray,
        labels: np.ndarray,
        names: dict[int, str],
        level: str,
    ) -> list[list[int]]:
        """Add one level's traces (noise first) and names; its rows per trace."""
        import plotly.graph_objects as go

        n = len(self.texts)
        kind = go.Scattergl if n > _WEBGL_ABOVE else go.Scatter
        size = 8 if n <= 1_000 else 5 if n <= 10_000 else 3
        shown = level == "cluster"  # the topics wait for the selector
        members = []
        for group in sorted(set(labels.tolist())):  # noise (-1) first
            rows = np.flatnonzero(labels == group)
            members.append(rows.tolist())
            fig.add_trace(
                kind(
                    x=x[rows],
                    y=y[rows],
                    mode="markers",
                    name=_e(f"{names[group]} ({rows.size:,})"),
                    marker={
                        "size": size,
                        "color": self.colour(group),
                        "opacity": 0.45 if group < 0 else 0.85,
                    },
                    hovertemplate="%{hovertext}<extra></extra>",
                    visible=shown,
                    meta=level,
                )
            )
        places = self.centres(x, y, labels) if shown else self.topic_places(x, y)
        for group, (cx, cy) in places.items():
            fig.add_annotation(
                x=float(cx), y=float(cy), text=_e(names[group]),
                showarrow=False, font={"size": 11 if shown else 13, "color": "#111"},
                bgcolor="rgba(255,255,255,0.72)", borderpad=1,
                name=f"{level}-{group}", visible=shown,
            )  # fmt: skip
        return members

    def centres(
        self, x: np.ndarray, y: np.ndarray, labels: np.ndarray | None = None
    ) -> dict[int, tuple[float, float]]:
        """Where each of the largest clusters (or topics) is named: its member
        nearest the median of its members (on it, even when it is curved)."""
        labels = self.labels if labels is None else labels
        out = {}
        groups = sorted(c for c in set(labels.tolist()) if c >= 0)
        for group in groups[:_MAX_MAP_NAMES]:
            rows = np.flatnonzero(labels == group)
            mx, my = np.median(x[rows]), np.median(y[rows])
            k = rows[np.argmin((x[rows] - mx) ** 2 + (y[rows] - my) ** 2)]
            out[group] = (float(x[k]), float(y[k]))
        return out

    def topic_places(self, x: np.ndarray, y: np.ndarray) -> dict[int, tuple]:
        """Where each topic is named: as a cluster is, unless that name would
        cover one placed before (a topic's clusters can lie apart, so medians
        crowd the middle); then on its first cluster (largest first), else on
        the first of its rows (nearest first, within the view) where it does
        not."""
        assert self.topic_labels is not None
        view = [_view(v) or [float(v.min()), float(v.max())] for v in (x, y)]
        spans = [max(high - low, 1e-9) for low, high in view]
        unit = min(_PLOT_PX[0] / spans[0], _PLOT_PX[1] / spans[1])  # px per unit
        height = _NAME_PX[1] / unit
        placed: list[tuple[float, float, float]] = []  # x, y, half width
        out = {}
        for topic, spot in self.centres(x, y, self.topic_labels).items():
            half = (len(self.topic_names[topic]) * _NAME_PX[0] + 10) / 2 / unit
            mine = np.where(self.topic_labels == topic, self.labels, -1)
            spots = [spot, *self.centres(x, y, mine).values()]  # clusters by size
            rows = np.flatnonzero(mine >= 0)  # then its rows, nearest first
            rows = rows[np.argsort(np.hypot(x[rows] - spot[0], y[rows] - spot[1]))]
            step = max(rows.size // 24, 1)
            spots += list(zip(x[rows][::step], y[rows][::step], strict=True))
            free = [
                (float(px), float(py))
                for px, py in spots
                if view[0][0] <= px <= view[0][1] and view[1][0] <= py <= view[1][1]
                and all(abs(px - qx) >= half + q or abs(py - qy) >= height
                        for qx, qy, q in placed)
            ]  # fmt: skip
            out[topic] = free[0] if free else spot
            placed.append((*out[topic], half))
        return out

    # -------------------------------------------------------------- tables
    def cluster_table(self) -> str:
        rows = []
        with_topics = self.topic_labels is not None and "topic" in self.summary
        for record in self.summary.to_dict("records"):
            cluster = int(record["cluster"])
            topic = ""
            if with_topics:
                t = int(record["topic"])
                topic = (
                    f'<td><span class="dot" style="background:{self.colour(t)}">'
                    f"</span>{_e(self.topic_names.get(t, 'noise'))}</td>"
                )
            rows.append(
                f'<tr class="pick" data-cluster="{cluster}">'
                f'<td><span class="dot" style="background:{self.colour(cluster)}">'
                f"</span>{cluster}</td><td>{_e(self.names.get(cluster, 'noise'))}</td>"
                f"{topic}{self._size_cells(record)}</tr>"
            )
        if not (self.labels >= 0).any():
            note = (
                '<p class="note">No clusters found: every row is noise. Lower '
                "<code>min_cluster_size</code> of the clusterer, or pass "
                "<code>n_clusters</code>.</p>"
            )
        else:
            note = ""
        headers = ["cluster", "name"] + ["topic"] * with_topics
        return note + _table(
            headers + ["size", "share", "keywords", "representatives"], rows
        )

    def topic_table(self) -> str:
        """The topics: name, the clusters each holds, size, keywords, texts."""
        if self.topic_labels is None:
            return ""
        rows = []
        for record in self.topics.to_dict("records"):
            topic = int(record["topic"])
            clusters = [int(c) for c in record["clusters"] if int(c) >= 0]
            held = ", ".join(self.names[c] for c in clusters[:6])
            if len(clusters) > 6:
                held += f" and {len(clusters) - 6:,} more"
            rows.append(
                f'<tr class="pick" data-topic="{topic}">'
                f'<td><span class="dot" style="background:{self.colour(topic)}">'
                f"</span>{topic}</td><td>{_e(self.topic_names.get(topic, 'noise'))}"
                f'</td><td class="num">{len(clusters):,}</td><td>{_e(held)}</td>'
                f"{self._size_cells(record)}</tr>"
            )
        table = _table(
            ["topic", "name", "clusters", "cluster names", "size", "share",
             "keywords", "representatives"],
            rows,
        )  # fmt: skip
        n_topics = len(self.topic_names) - 1
        return (
            '<section id="topics"><h2>Topics</h2><p class="note">The '
            f"{len(self.names) - 1:,} clusters merged into {n_topics:,} topics "
            "(<code>EmbeddingClusterer.topics</code>): each merge joins the two "
            "groups whose union keeps the rows closest to their mean direction. "
            "Show them on the map with the selector above it.</p>"
            f'<div class="scroll">{table}</div></section>'
        )

    @staticmethod
    def _size_cells(record: dict[str, Any]) -> str:
        """Size, share, keywords and up to three representative texts."""
        keywords = ", ".join(record.get("keywords") or [])
        reps = "".join(
            f"<li>{_e(clean_text(t, 200))}</li>"
            for t in list(record.get("representative_texts") or [])[:3]
        )
        return (
            f'<td class="num">{int(record["size"]):,}</td>'
            f'<td class="num">{100 * float(record["share"]):.1f}%</td>'
            f"<td>{_e(keywords)}</td><td><ul>{reps}</ul></td>"
        )

    def outlier_table(self, top: Any) -> str:
        rows = []
        for record in top.to_dict("records"):
            nearest = int(record["nearest_row"])
            flag = "yes" if record["is_outlier"] else ""
            rows.append(
                f'<tr class="pick" data-rows="{int(record["row"])},{nearest}">'
                f'<td class="num">{self.row(int(record["row"]))}</td>'
                f'<td class="num">{_number(record["outlier_score"])}</td>'
                f"<td>{flag}</td>"
                f"<td>{_e(self.names.get(int(record['cluster']), ''))}</td>"
                f"<td>{_e(self.texts[int(record['row'])])}</td>"
                f'<td class="num">{_number(record["nearest_similarity"])}</td>'
                f"<td>{_e(self.texts[nearest])}</td></tr>"
            )
        return _table(
            [
                "row" if self.ids is None else "id",
                "score",
                "flagged",
                "cluster",
                "text",
                "nearest similarity",
                "nearest text",
            ],
            rows,
        )

    def duplicate_table(self, duplicates: Any) -> str:
        threshold = self.dedupe.threshold_
        sizes = self.dedupe.group_sizes_
        n_groups = int((sizes > 1).sum())
        if n_groups == 0:
            return (
                f'<p class="note">No two rows reach similarity {threshold:.3f}: '
                "no near-copies.</p>"
            )
        rows = []
        for record in duplicates.to_dict("records"):
            members = [int(r) for r in record["rows"]]
            kept, others = members[0], members[1:]
            items = "".join(
                f'<li><span class="num">{self.row(r)}</span> {_e(self.texts[r])}</li>'
                for r in others[:5]
            )
            if len(others) > 5:
                items += f"<li>and {len(others) - 5:,} more</li>"
            rows.append(
                f'<tr class="pick" data-rows="{",".join(map(str, members))}">'
                f'<td class="num">{int(record["size"]):,}</td>'
                f'<td class="num">{_number(record["min_similarity"])}</td>'
                f'<td class="num">{self.row(kept)}</td><td>{_e(self.texts[kept])}</td>'
                f"<td><ul>{items}</ul></td></tr>"
            )
        note = (
            f'<p class="note">{n_groups:,} groups of near-copies hold '
            f"{int(sizes[sizes > 1].sum()):,} rows; every member is at least "
            f"{threshold:.3f} similar to its group's kept row (exact copies "
            f"included). The {len(rows):,} largest groups are shown.</p>"
        )
        return note + _table(
            [
                "size",
                "lowest similarity",
                "kept row" if self.ids is None else "kept id",
                "kept text",
                "other members",
            ],
            rows,
        )

    def diversity_table(self) -> str:
        frame = self.diversity.to_frame()
        columns = [
            ("n_samples", "rows"),
            ("mean_similarity", "mean similarity"),
            ("nn_similarity_p50", "median nearest similarity"),
            ("n_duplicate_pairs", "near-duplicate pairs"),
            ("duplicate_share", "rows with a near-duplicate"),
            ("vendi_score", "Vendi score"),
            ("vendi_share", "Vendi score / rows"),
        ]
        columns = [(c, label) for c, label in columns if c in frame.columns]
        rows = []
        for name, record in zip(frame.index, frame.to_dict("records"), strict=True):
            cells = "".join(
                f'<td class="num">{_number(record[c], 2 if c == "vendi_score" else 3)}'
                "</td>"
                for c, _ in columns
            )
            rows.append(f"<tr><td>{_e(name)}</td>{cells}</tr>")
        return _table(["group"] + [label for _, label in columns], rows)

    # ---------------------------------------------------------------- page
    def render(self, top: Any, duplicates: Any, drift: str = "") -> str:
        import plotly.io as pio
        from plotly.offline import get_plotlyjs

        fig, members = self.figure()
        n = len(self.texts)
        n_clusters = int(len(set(self.labels.tolist()) - {-1}))
        data: dict[str, Any] = {
            "texts": self.texts,
            "labels": self.labels.tolist(),
            "names": {str(k): v for k, v in self.names.items()},
            "members": members,
        }
        level = ""
        if self.topic_labels is not None:
            data["topics"] = self.topic_labels.tolist()
            data["topicNames"] = {str(k): v for k, v in self.topic_names.items()}
            level = (
                '<label class="level">Colour and name the map by <select '
                f'id="et-level"><option value="cluster">clusters ({n_clusters:,})'
                f'</option><option value="topic">topics ({len(self.topic_names) - 1:,})'
                "</option></select></label>"
            )
        if self.groups is not None:
            data["groups"] = self.groups.tolist()
        if self.ids is not None:
            data["ids"] = self.ids
        stats = [
            (f"{n:,}", "rows"),
            (f"{n_clusters:,}", "clusters"),
            *[(f"{len(self.topic_names) - 1:,}", "topics")] * bool(level),
            (f"{int((self.labels < 0).sum()):,}", "noise rows"),
            (f"{int(self.points['is_outlier'].sum()):,}", "flagged outliers"),
            (f"{int((self.dedupe.group_sizes_ > 1).sum()):,}", "near-copy groups"),
            (f"{float(self.diversity.vendi_score_):,.1f}", "Vendi score"),
        ]
        cards = "".join(
            f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>'
            for v, k in stats
        )
        return _TEMPLATE.format(
            title=_e(self.title),
            cards=cards,
            plotly=get_plotlyjs(),
            figure=pio.to_json(fig, validate=False, remove_uids=True),
            data=_script_json(data),
            clusters=self.cluster_table(),
            topics=self.topic_table(),
            topics_nav='<a href="#topics">Topics</a>' if level else "",
            level=level,
            outliers=self.outlier_table(top),
            duplicates=self.duplicate_table(duplicates),
            diversity=self.diversity_table(),
            drift=drift,
            drift_nav='<a href="#drift">Drift</a>' if drift else "",
            script=_SCRIPT,
            style=_STYLE,
        )


def _table(headers: Sequence[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;
color:#1d1d1f;background:#fafafa}
header{padding:18px 28px 8px}h1{font-size:22px;margin:0 0 10px}
nav a{margin-right:14px;color:#2E61B5;text-decoration:none}
main{padding:0 28px 40px;max-width:1500px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:14px 18px;
margin:16px 0}h2{font-size:17px;margin:2px 0 10px}
.cards{display:flex;gap:10px;flex-wrap:wrap;margin:8px 0}
.card{background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:8px 14px;
min-width:110px}.card b{display:block;font-size:20px}
.card span{color:#666;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #eee;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}td.num{text-align:right;white-space:nowrap}
td{overflow-wrap:anywhere}ul{margin:0;padding-left:16px}
tr.pick{cursor:pointer}tr.pick:hover{background:#f1f6ff}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px}
.note{color:#555;margin:4px 0 10px}.scroll{max-height:520px;overflow:auto}
#et-filter{width:min(520px,90%);padding:7px 10px;font-size:14px;border:1px solid #bbb;
border-radius:6px}#et-count{margin-left:10px;color:#555}
#et-matches{max-height:260px;overflow:auto;margin-top:8px}
#et-matches div{padding:3px 0;border-bottom:1px solid #f0f0f0;cursor:pointer}
#et-matches small{color:#777;margin-right:8px}
.level{margin-left:14px;color:#333}.level select{font-size:14px;padding:4px 6px}
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("et-data").textContent);
  var FIG = JSON.parse(document.getElementById("et-figure").textContent);
  var gd = document.getElementById("et-map");
  function esc(s) {
    return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function wrap(s, width) {  // plotly hover labels break only at <br>
    var words = s.split(/\s+/), lines = [], line = "";
    words.forEach(function (w) {
      while (w.length > width) {
        if (line) { lines.push(line); line = ""; }
        lines.push(w.slice(0, width)); w = w.slice(width);
      }
      if (line && line.length + 1 + w.length > width) { lines.push(line); line = w; }
      else { line = line ? line + " " + w : w; }
    });
    if (line) lines.push(line);
    return lines.map(esc).join("<br>");
  }
  function rowName(i) { return DATA.ids ? DATA.ids[i] : "row " + i; }
  function header(i) {
    var h = rowName(i) + " · ";
    if (DATA.topics && DATA.labels[i] >= 0) {
      h += DATA.topicNames[String(DATA.topics[i])] + " › ";
    }
    h += DATA.names[String(DATA.labels[i])];
    if (DATA.groups) h += " · " + DATA.groups[i];
    return "<b>" + esc(h) + "</b>";
  }
  var where = {};  // row -> [[trace, index in trace], ...]: one per level
  DATA.members.forEach(function (rows, t) {
    FIG.data[t].customdata = rows;
    FIG.data[t].hovertext = rows.map(function (i) {
      return header(i) + "<br>" + wrap(DATA.texts[i], 72);
    });
    rows.forEach(function (i, k) { (where[i] = where[i] || []).push([t, k]); });
  });
  var config = {responsive: true, displaylogo: false, scrollZoom: true};
  var ready = Plotly.newPlot(gd, FIG.data, FIG.layout, config);

  var level = document.getElementById("et-level");
  if (level) {  // clusters or topics: their traces and names shown, the others hidden
    level.addEventListener("change", function () {
      var shown = level.value, names = {};
      var visible = FIG.data.map(function (t) { return t.meta === shown; });
      (FIG.layout.annotations || []).forEach(function (a, k) {
        names["annotations[" + k + "].visible"] = a.name.split("-")[0] === shown;
      });
      ready = ready.then(function () {
        return Plotly.update(gd, {visible: visible}, names);
      }).then(function () { document.body.dataset.level = shown; });
    });
  }

  function highlight(rows) {
    var picked = DATA.members.map(function () { return []; });
    if (rows === null) {
      picked = DATA.members.map(function () { return null; });
    } else {
      rows.forEach(function (i) {
        (where[i] || []).forEach(function (w) { picked[w[0]].push(w[1]); });
      });
    }
    ready.then(function () {
      Plotly.restyle(gd, {selectedpoints: picked,
                          "unselected.marker.opacity": 0.08});
    });
  }
  window.embedtasksHighlight = highlight;

  var lower = null, box = document.getElementById("et-filter");
  var count = document.getElementById("et-count");
  var list = document.getElementById("et-matches");
  var timer = null;
  function show(rows) {
    list.textContent = "";
    rows.slice(0, 200).forEach(function (i) {
      var div = document.createElement("div"), tag = document.createElement("small");
      tag.textContent = rowName(i) + " · " + DATA.names[String(DATA.labels[i])];
      div.appendChild(tag);
      div.appendChild(document.createTextNode(DATA.texts[i]));
      div.addEventListener("click", function () { highlight([i]); });
      list.appendChild(div);
    });
  }
  function filter() {
    var q = box.value.trim().toLowerCase();
    if (!q) { count.textContent = ""; list.textContent = ""; highlight(null); return; }
    if (lower === null) {
      lower = DATA.texts.map(function (s) { return s.toLowerCase(); });
    }
    var rows = [];
    lower.forEach(function (s, i) { if (s.indexOf(q) >= 0) rows.push(i); });
    count.textContent = rows.length.toLocaleString() + " of " +
      DATA.texts.length.toLocaleString() + " rows match" +
      (rows.length > 200 ? " (first 200 listed)" : "");
    show(rows);
    highlight(rows);
  }
  box.addEventListener("input", function () {
    clearTimeout(timer); timer = setTimeout(filter, 150);
  });
  document.querySelectorAll("tr.pick").forEach(function (tr) {
    tr.addEventListener("click", function () {
      var rows;
      if (tr.dataset.cluster !== undefined || tr.dataset.topic !== undefined) {
        var byTopic = tr.dataset.topic !== undefined;
        var c = Number(byTopic ? tr.dataset.topic : tr.dataset.cluster);
        rows = [];
        (byTopic ? DATA.topics : DATA.labels).forEach(function (l, i) {
          if (l === c) rows.push(i);
        });
      } else {
        rows = tr.dataset.rows.split(",").map(Number);
      }
      highlight(rows);
      gd.scrollIntoView({behavior: "smooth", block: "center"});
    });
  });
  document.getElementById("et-reset").addEventListener("click", function () {
    box.value = ""; filter();
  });
  ready.then(function () { document.body.dataset.ready = "1"; });
})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{style}</style>
<script>{plotly}</script></head>
<body><header><h1>{title}</h1><div class="cards">{cards}</div>
<nav>{drift_nav}<a href="#map">Map</a>{topics_nav}<a href="#clusters">Clusters</a>
<a href="#outliers">Outliers</a><a href="#duplicates">Near-duplicates</a>
<a href="#diversity">Diversity</a></nav>
</header><main>{drift}
<section id="map"><h2>Map</h2>
<p class="note">Each point is a row, placed by the clusterer's 2-D map and coloured by
cluster; hover for its text, click a legend entry to hide a cluster, double-click to
show it alone. Click a row of any table below to light its points up.</p>
<input id="et-filter" type="search" placeholder="Filter the texts…" autocomplete="off">
<button id="et-reset" type="button">Show all</button><span id="et-count"></span>
{level}
<div id="et-matches"></div>
<div id="et-map"></div></section>
{topics}
<section id="clusters"><h2>Clusters</h2><div class="scroll">{clusters}</div></section>
<section id="outliers"><h2>Most unusual rows</h2><p class="note">Score: how unrelated a
row is to its most similar rows (higher is more unusual); flagged rows are past the
outlier scorer's threshold.</p><div class="scroll">{outliers}</div></section>
<section id="duplicates"><h2>Near-duplicates</h2><div class="scroll">{duplicates}</div>
</section>
<section id="diversity"><h2>Diversity</h2><p class="note">Vendi score: the effective
number of distinct rows. Mean similarity: over all pairs of rows.</p>
<div class="scroll">{diversity}</div></section>
</main>
<script type="application/json" id="et-data">{data}</script>
<script type="application/json" id="et-figure">{figure}</script>
<script>{script}</script>
</body></html>
"""
