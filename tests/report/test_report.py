"""The HTML report: its tables, its escaping, its edge cases, and a real browser.

Most tests pass embeddings (a few Gaussian blobs) so no model runs; the browser
tests load the written file from disk in headless Chromium over the DevTools
protocol (``websocket-client``), record every console error, exception and
network request, count the points plotly drew and write a screenshot. They skip
only when no Chromium is installed (``.ci/run`` installs the Debian package).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from embedtasks import (
    DiversityReport,
    EmbeddingClusterer,
    NearDuplicates,
    OutlierScorer,
    Report,
    report,
)
from embedtasks._report._page import Page
from embedtasks.cli import main

pytest.importorskip("plotly", reason="the report needs the [report] extra (plotly)")

NASTY = [
    "</script><script>window.PWNED = 1</script>",
    "<!-- an HTML comment opener and <b>bold</b> & &amp; entities",
    "quotes ' \" ` and a backslash \\ and {braces} %s {0} ${x}",
    "ünïcödé — 漢字 — العربية — emoji 🎉👩‍👩‍👧 — line\u2028separator",
    "tab\tnew\nline and a NUL\x00 and a bell\x07",
]


def blobs(n: int, *, k: int = 3, dim: int = 16, seed: int = 0) -> np.ndarray:
    """``n`` rows around ``k`` orthogonal directions, rows cycling through them."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim, dtype=np.float32)[:k]
    return (centres[np.arange(n) % k] + 0.05 * rng.normal(size=(n, dim))).astype(
        np.float32
    )


def pca_clusterer(**kwargs: Any) -> EmbeddingClusterer:
    params = {"reduction": "pca", "n_components": 2, "min_cluster_size": 5}
    return EmbeddingClusterer(**{**params, **kwargs}, random_state=0)


class _Scripts(HTMLParser):
    """Collects each <script> element's attributes and text, as a browser parses."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._current: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._current = dict(attrs)
            self.scripts.append((self._current, ""))

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._current = None


def scripts_of(page: str) -> dict[str, str]:
    parser = _Scripts()
    parser.feed(page)
    return {
        attrs.get("id") or f"#{i}": text
        for i, (attrs, text) in enumerate(parser.scripts)
    }


# -- tables ------------------------------------------------------------------------
def test_report_tables_come_from_the_estimators():
    texts = [f"text {i} of topic {i % 3}" for i in range(30)]
    X = blobs(30)
    X[7] = X[4]  # a copy: the top near-duplicate pair
    clusterer = pca_clusterer().fit(X)
    page = report(texts, X, clusterer=clusterer)
    assert isinstance(page, Report)
    assert page.points.shape[0] == 30
    np.testing.assert_array_equal(page.points["cluster"], clusterer.labels_)
    np.testing.assert_array_equal(page.points[["x", "y"]], clusterer.map_)
    pd.testing.assert_frame_equal(
        page.clusters, clusterer.summary(texts, n_topics="auto")
    )
    pd.testing.assert_frame_equal(page.topics, clusterer.topics(texts))
    np.testing.assert_array_equal(page.points["topic"], clusterer.topic_labels())
    dedupe = NearDuplicates(random_state=0).fit(X)  # tight blobs: 0.95 groups them
    assert page.duplicates["rows"].map(len).tolist() == sorted(
        dedupe.group_sizes_[dedupe.group_sizes_ > 1], reverse=True
    )
    assert any(4 in rows and 7 in rows for rows in page.duplicates["rows"])
    scorer = OutlierScorer().fit(X)
    expected = np.argsort(scorer.training_scores_, kind="stable")[:20]
    assert page.outliers["row"].tolist() == expected.tolist()
    diversity = DiversityReport(random_state=0).fit(X).to_frame()
    pd.testing.assert_frame_equal(page.diversity, diversity)
    assert repr(page).startswith("Report(30 rows, 3 clusters")


def test_report_reuses_a_fitted_clusterer_and_leaves_unfitted_ones_alone():
    X, texts = blobs(30), [f"t{i}" for i in range(30)]
    unfitted = pca_clusterer()
    report(texts, X, clusterer=unfitted)
    assert not hasattr(unfitted, "labels_")  # fitted on a copy
    fitted = pca_clusterer(min_cluster_size=6).fit(X)
    page = report(texts, X, clusterer=fitted)
    np.testing.assert_array_equal(page.points["cluster"], fitted.labels_)


def test_report_groups_give_one_diversity_row_each():
    X, texts = blobs(30), [f"t{i}" for i in range(30)]
    page = report(texts, X, groups=["a", "b"] * 15, clusterer=pca_clusterer())
    assert page.diversity.index.tolist() == ["all", "a", "b"]
    assert page.points["group"].tolist() == ["a", "b"] * 15
    one = report(texts, X, groups=["only"] * 30, clusterer=pca_clusterer())
    assert one.diversity.index.tolist() == ["all", "only"]


# -- escaping ----------------------------------------------------------------------
def test_report_escapes_every_text_and_keeps_them_in_its_data():
    texts = [NASTY[i % len(NASTY)] + f" #{i}" for i in range(30)]
    page = report(
        texts, blobs(30), groups=["<g>&"] * 30, clusterer=pca_clusterer(),
        title="</title><script>alert(1)</script>",
    )  # fmt: skip
    scripts = scripts_of(page.html)
    # plotly's library, the data, the figure, our code: no text opened another.
    assert len(scripts) == 4, list(scripts)
    data = json.loads(scripts["et-data"])
    assert data["texts"][0] == texts[0]  # intact once parsed
    assert data["texts"][4].startswith("tab\tnew\nline and a NUL  and a bell ")
    assert data["groups"][0] == "<g>&"
    assert "<title>&lt;/title&gt;&lt;script&gt;" in page.html
    assert len(json.loads(scripts["et-figure"])["data"]) >= 1


def test_report_cuts_long_texts_to_keep_the_file_small():
    paragraph = "A long paragraph of words that goes on. " * 200  # 8,000 chars
    texts = [f"{i} {paragraph}" for i in range(30)]
    page = report(texts, blobs(30), clusterer=pca_clusterer(), max_text_chars=120)
    data = json.loads(scripts_of(page.html)["et-data"])
    assert max(map(len, data["texts"])) <= 120 < len(texts[0])
    assert all(t.endswith("…") for t in data["texts"])
    assert page.points.shape == (30, 7)  # row, x, y, cluster, topic, 2 outlier


@pytest.mark.slow
def test_report_of_20k_rows_stays_small():
    n = 20_000
    texts = [f"row {i}: " + "some words in a paragraph " * 20 for i in range(n)]
    page = report(
        texts, blobs(n, k=5), clusterer=EmbeddingClusterer(
            n_clusters=5, reduction="pca", n_components=2, random_state=0
        ),
    )  # fmt: skip
    size = len(page.html.encode("utf-8"))
    assert size < 20e6, f"{size / 1e6:.1f} MB"
    assert page.points.shape[0] == n
    figure = json.loads(scripts_of(page.html)["et-figure"])
    assert all(trace["type"] == "scattergl" for trace in figure["data"])


# -- small and degenerate corpora --------------------------------------------------
def test_report_of_five_rows():
    texts = ["a cat", "a dog", "tax rates", "rain today", "</script>"]
    page = report(texts, blobs(5, k=5))
    assert page.points.shape[0] == 5
    assert len(page.outliers) == 5
    assert "</script>" in json.loads(scripts_of(page.html)["et-data"])["texts"]


def test_report_without_clusters_says_so():
    X, texts = blobs(30), [f"t{i}" for i in range(30)]
    page = report(texts, X, clusterer=pca_clusterer(min_cluster_size=31))
    assert (page.points["cluster"] == -1).all()
    assert "No clusters found" in page.html
    assert page.duplicates.empty or "No two rows reach" not in page.html


def test_report_shows_groups_of_near_copies():
    texts = [f"text {i}" for i in range(30)]
    X = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    X[[9, 12, 20]] = X[3]  # four copies: one group, not six pairs
    X[25] = X[5]
    page = report(texts, X, clusterer=pca_clusterer())
    table = page.duplicates
    assert table["rows"].tolist() == [[3, 9, 12, 20], [5, 25]]
    assert table["size"].tolist() == [4, 2] and table["canonical_row"].tolist() == [
        3,
        5,
    ]
    assert "2 groups of near-copies hold 6 rows" in page.html
    assert 'data-rows="3,9,12,20"' in page.html


def test_report_without_near_duplicates_says_so():
    X = np.eye(8, dtype=np.float32)
    page = report([f"t{i}" for i in range(8)], X, clusterer=pca_clusterer())
    assert page.duplicates.empty
    assert "No two rows reach similarity 0.950: no near-copies" in page.html


# -- errors ------------------------------------------------------------------------
def test_report_needs_two_texts():
    with pytest.raises(ValueError, match="at least 2 texts, got 1"):
        report(["alone"], blobs(1))


def test_report_rejects_a_bad_size():
    with pytest.raises(ValueError, match="max_text_chars must be an int >= 1, got 0"):
        report(["a", "b"], blobs(2), max_text_chars=0)


def test_report_rejects_embeddings_of_other_rows():
    with pytest.raises(ValueError, match=r"3 texts but embeddings of shape \(2, 16\)"):
        report(["a", "b", "c"], blobs(2))


def test_report_rejects_groups_of_other_rows():
    with pytest.raises(ValueError, match=r"30 texts but groups of shape \(2,\)"):
        report([f"t{i}" for i in range(30)], blobs(30), groups=["a", "b"])


def test_report_rejects_a_clusterer_fitted_on_other_rows():
    fitted = pca_clusterer().fit(blobs(40))
    with pytest.raises(ValueError, match="fitted on 40 rows for 30 texts"):
        report([f"t{i}" for i in range(30)], blobs(30), clusterer=fitted)


# -- notebooks and files -----------------------------------------------------------
def test_report_saves_and_shows_itself_in_a_notebook(tmp_path):
    page = report([f"t{i}" for i in range(30)], blobs(30), clusterer=pca_clusterer())
    path = page.save(tmp_path / "sub" / "r.html")
    assert path.read_text("utf-8") == page.html
    shown = page._repr_html_()
    assert shown.startswith("<iframe") and "<script" not in shown
    assert "&lt;script" in shown


def test_cli_report_writes_the_page(fake_server, tmp_path, capsys):
    server = fake_server(dim=16)
    data_file = tmp_path / "docs.csv"
    texts = [f"document {i} about {['cats', 'tax', 'rain'][i % 3]}" for i in range(40)]
    frame = pd.DataFrame({"text": texts, "src": ["x", "y"] * 20})
    frame.to_csv(data_file, index=False)
    out = tmp_path / "r.html"
    code = main([
        "report", str(data_file), "--group-column", "src", "-o", str(out),
        "--base-url", server.url, "--model", "fake", "--cache-dir", str(tmp_path / "c"),
        "--min-cluster-size", "5", "--title", "My <corpus>",
    ])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "wrote Report(40 rows" in err
    page = out.read_text("utf-8")
    assert "<title>My &lt;corpus&gt;</title>" in page
    data = json.loads(scripts_of(page)["et-data"])
    assert data["groups"][:2] == ["x", "y"]
    assert 'id="et-level"' in page and len(data["topics"]) == 40
    # --topics N merges into N topics, --topics none leaves the clusters alone
    for flag, topics in (("2", 2), ("none", None)):
        code = main([
            "report", str(data_file), "-o", str(out), "--base-url", server.url,
            "--model", "fake", "--cache-dir", str(tmp_path / "c"), "--n-clusters",
            "4", "--reduction", "none", "--topics", flag,
        ])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        page = out.read_text("utf-8")
        data = json.loads(scripts_of(page)["et-data"])
        if topics is None:
            assert "topics" not in data and 'id="et-level"' not in page
        else:
            assert sorted(set(data["topics"])) == list(range(topics))
            assert f"topics ({topics})</option>" in page


def test_cli_report_names_a_missing_group_column(tmp_path, capsys):
    data = tmp_path / "docs.csv"
    pd.DataFrame({"text": ["a", "b", "c"]}).to_csv(data, index=False)
    code = main(["report", str(data), "--group-column", "nope", "-o", "r.html"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "column 'nope' not found" in err and "--group-column" in err


# -- a real browser ----------------------------------------------------------------
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _DevTools:
    """A page of headless Chromium driven over the DevTools protocol."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.last_id, self.events = ws, 0, []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        self.ws.send(
            json.dumps({"id": self.last_id, "method": method, "params": params})
        )
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, exceptions, error logs, non-file requests."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in (
                "error",
                "assert",
                "warning",
            ):
                found.append(f"console.{params['type']}: {params['args']}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry']}")
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith(("file:", "data:", "blob:", "about:")):
                    found.append(f"request: {url}")
        return found


@pytest.fixture
def browser(tmp_path):
    """Open a file in headless Chromium; yields ``open(path) -> _DevTools``."""
    executable = _chromium()
    if executable is None:
        pytest.skip(
            "Chromium is not installed (apt-get install chromium): the report's "
            "browser test needs it; .ci/run installs it"
        )
    websocket = pytest.importorskip("websocket", reason="needs websocket-client")
    processes, pages = [], []

    def open_page(path: Path, timeout: float = 120.0) -> _DevTools:
        profile = tmp_path / f"profile{len(processes)}"
        process = subprocess.Popen(
            [
                executable, "--headless=new", "--no-sandbox", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--remote-debugging-port=0",
                "--remote-allow-origins=*", f"--user-data-dir={profile}",
                "--window-size=1400,1000", "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        processes.append(process)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            assert process.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium opened no debugging port"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
            targets = json.load(answer)
        url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        page = _DevTools(
            websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        )
        pages.append(page)
        for domain in ("Runtime", "Log", "Network", "Page"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=path.resolve().as_uri())
        while page.evaluate("document.body && document.body.dataset.ready") != "1":
            assert time.monotonic() < deadline, (
                f"the map was not drawn in {timeout:g} s: {page.problems()}"
            )
            time.sleep(0.1)
        return page

    yield open_page
    for page in pages:
        page.ws.close()
    for process in processes:
        process.kill()
        process.wait()


_POINTS_DRAWN = (  # by the traces shown (the other level's are hidden)
    "document.getElementById('et-map')._fullData.reduce(function (n, trace) "
    "{ return n + (trace.visible === true ? trace._length : 0); }, 0)"
)


def _click_and_count(selector: str) -> str:
    """Click an element, then count the lit points of each level's traces."""
    return (
        f"(function () {{ document.querySelector('{selector}').click();"
        " var gd = document.getElementById('et-map'); return new Promise("
        "function (done) { setTimeout(function () { var lit = {cluster: [],"
        " topic: []}; gd.data.forEach(function (t) { lit[t.meta].push("
        "(t.selectedpoints || []).length); }); done(lit); }, 300); }); })()"
    )


def _screenshot(page: _DevTools, path: Path) -> bytes:
    """The whole page, not only the window, as PNG."""
    height = page.evaluate("document.documentElement.scrollHeight")
    shot = page.call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": 1400, "height": height, "scale": 1},
    )
    png = base64.b64decode(shot["data"])
    path.write_bytes(png)
    return png


@pytest.mark.local_model
def test_browser_opens_the_cli_report_offline(browser, tmp_path, capsys):
    topics = {
        "cards": "my card was declined at the {}",
        "login": "I cannot log in to my {}",
        "transfer": "how long does a transfer to {} take",
    }
    fillers = ["shop", "bank app", "France", "airport", "website", "Japan", "cafe",
               "laptop", "Peru", "station", "profile", "Kenya", "market", "phone",
               "Chile", "cinema", "account", "Spain", "bar", "tablet"]  # fmt: skip
    rows = [(t, g) for g, t in topics.items() for t in map(t.format, fillers)]
    rows.append(("the migration patterns of arctic terns </script>", "cards"))
    frame = pd.DataFrame(rows, columns=["text", "team"])
    frame.to_csv(tmp_path / "q.csv", index=False)
    out = tmp_path / "report.html"
    code = main([
        "report", str(tmp_path / "q.csv"), "--column", "text", "--group-column",
        "team", "-o", str(out), "--cache-dir", str(tmp_path / "c"), "--no-progress",
        "--min-cluster-size", "5",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    page = browser(out)
    assert page.evaluate(_POINTS_DRAWN) == len(frame) == 61
    assert page.evaluate("document.querySelectorAll('#et-map .point').length") == 61
    png = _screenshot(page, tmp_path / "report.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert page.problems() == []


def test_browser_shows_hostile_texts_as_text(browser, tmp_path):
    texts = [NASTY[i % len(NASTY)] + f" #{i}" for i in range(30)]
    texts[0] = "word " * 2000  # a long paragraph
    path = report(texts, blobs(30), groups=["g"] * 30, clusterer=pca_clusterer()).save(
        tmp_path / "r.html"
    )
    page = browser(path)
    assert page.evaluate("window.PWNED === undefined")
    assert page.evaluate(_POINTS_DRAWN) == 30
    row = page.evaluate(
        "(function () { var gd = document.getElementById('et-map');"
        " for (var t = 0; t < gd.data.length; t++) {"
        "  var k = gd.data[t].customdata.indexOf(5);"
        "  if (k >= 0) { Plotly.Fx.hover(gd, [{curveNumber: t, pointNumber: k}]);"
        "   return t; } } return -1; })()"
    )
    assert row >= 0
    hover = page.evaluate("document.querySelector('#et-map .hoverlayer').textContent")
    assert "</script><script>window.PWNED = 1</script> #5" in hover
    page.evaluate(
        "(function () { var box = document.getElementById('et-filter');"
        " box.value = '<b>BOLD'; box.dispatchEvent(new Event('input')); })()"
    )
    deadline = time.monotonic() + 10
    while not page.evaluate("document.getElementById('et-count').textContent"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert page.evaluate("document.getElementById('et-count').textContent") == (
        "6 of 30 rows match"
    )
    _screenshot(page, tmp_path / "hostile.png")
    # A click on a cluster's row lights up exactly that cluster's points (in
    # the traces shown, and in the topics' too).
    lit = page.evaluate(_click_and_count('tr.pick[data-cluster="1"]'))
    assert sum(lit["cluster"]) == 10 and sorted(lit["cluster"])[-1] == 10
    assert sum(lit["topic"]) == 10
    assert page.problems() == []


@pytest.mark.slow
def test_browser_draws_a_large_map_with_webgl(browser, tmp_path):
    n = 6_000
    page = report(
        [f"row {i}" for i in range(n)], blobs(n, k=4),
        clusterer=EmbeddingClusterer(
            n_clusters=4, reduction="pca", n_components=2, random_state=0
        ),
    )  # fmt: skip
    view = browser(page.save(tmp_path / "big.html"))
    assert view.evaluate(_POINTS_DRAWN) == n
    _screenshot(view, tmp_path / "big.png")
    assert view.problems() == []


# -- the map: names at the centres, distinct colours, a view that far points
# do not squash -----------------------------------------------------------------
_NOUNS = (
    "card loan tax rain jazz river violin rocket garden engine planet apple "
    "salary coffee bridge castle desert forest harbour island jungle ladder "
    "magnet needle orchid pepper quartz saddle tunnel umbrella valley walnut "
    "yacht zebra anchor bakery candle dragon falcon glacier"
).split()


def map_corpus(n: int, k: int = 40, seed: int = 0):
    """``k`` topics (embeddings around orthogonal directions), texts named by two
    words per topic, and a clusterer that finds them (KMeans, exactly k)."""
    X = blobs(n, k=k, dim=k, seed=seed)
    y = np.arange(n) % k
    texts = [
        f"{_NOUNS[t]} {_NOUNS[(t * 7 + 3) % k]} question {i}" for i, t in enumerate(y)
    ]
    clusterer = EmbeddingClusterer(n_clusters=k, random_state=0)  # on the 5-d UMAP
    return texts, X, clusterer


def test_map_names_every_cluster_at_its_centre_and_clips_far_points():
    texts, X, clusterer = map_corpus(2_000)
    page = report(texts, X, clusterer=clusterer)
    figure = json.loads(scripts_of(page.html)["et-figure"])
    notes = [
        a for a in figure["layout"]["annotations"] if a["name"].startswith("cluster-")
    ]
    assert all(a["visible"] for a in notes)
    names = page.clusters.set_index("cluster")["name"]
    assert sorted(a["text"] for a in notes) == sorted(names[names.index >= 0])
    assert len(set(names[names.index >= 0])) == 40
    for note in notes:  # each name sits on a member of its cluster
        cluster = int(note["name"].split("-")[1])
        members = page.points[page.points["cluster"] == cluster]
        assert ((members["x"] == note["x"]) & (members["y"] == note["y"])).any()
    colours = [t["marker"]["color"] for t in figure["data"] if t["meta"] == "cluster"]
    assert len(set(colours)) == len(colours) == 40  # no colour twice (no noise)
    # the topics: hidden until chosen, each named once at a member of its own
    topics = page.topics.set_index("topic")["name"]
    notes = [a for a in figure["layout"]["annotations"] if a not in notes]
    assert sorted(a["text"] for a in notes) == sorted(topics)
    assert not any(a["visible"] for a in notes)
    for note in notes:
        topic = int(note["name"].split("-")[1])
        members = page.points[page.points["topic"] == topic]
        assert ((members["x"] == note["x"]) & (members["y"] == note["y"])).any()
    hidden = [t for t in figure["data"] if t["meta"] == "topic"]
    assert len(hidden) == len(topics) and not any(t["visible"] for t in hidden)
    # a dozen far points (strays) stay on the map, outside the view
    points = page.points.copy()
    far = np.random.default_rng(1).normal(size=(12, 2)) * 50 * points["x"].std()
    far = far.astype(np.float32)
    points.loc[:11, ["x", "y"]] = far
    html = Page(
        texts=texts, summary=page.clusters, points=points,
        diversity=DiversityReport().fit(X), dedupe=NearDuplicates().fit(X),
        groups=None, title="t",
    ).render(page.outliers, page.duplicates)  # fmt: skip
    layout = json.loads(scripts_of(html)["et-figure"])["layout"]
    for axis in ("x", "y"):
        low, high = layout[f"{axis}axis"]["range"]
        values = points[axis]
        assert 1 <= ((values < low) | (values > high)).sum() <= 12
        cloud = values[12:]
        assert low <= cloud.quantile(0.01) and cloud.quantile(0.99) <= high
        assert high - low < 0.2 * (values.max() - values.min())


def test_topic_names_do_not_cover_each_other():
    # topic 0: a blob at the origin; topic 1: a blob beside it (most of its
    # rows, so its median is there too) and a smaller one far off
    rng = np.random.default_rng(0)
    sizes = [40, 30, 20]
    centres = np.repeat([[0.0, 0.0], [0.05, 0.0], [5.0, 5.0]], sizes, axis=0)
    xy = (centres + 0.01 * rng.normal(size=centres.shape)).astype(np.float32)
    cluster = np.repeat([0, 1, 2], sizes)
    points = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "cluster": cluster,
                           "topic": np.repeat([0, 1, 1], sizes)})  # fmt: skip
    summary = pd.DataFrame({"cluster": [0, 1, 2], "name": ["a", "b", "c"]})
    topics = pd.DataFrame({"topic": [0, 1], "name": ["first topic", "second topic"]})
    page = Page(
        texts=["t"] * 90, summary=summary, points=points, diversity=None,
        dedupe=None, groups=None, title="t", topics=topics,
    )  # fmt: skip
    places = page.topic_places(xy[:, 0], xy[:, 1])
    assert places[0] == page.centres(xy[:, 0], xy[:, 1], cluster)[0]
    far = page.centres(xy[:, 0], xy[:, 1], cluster)[2]  # on its own other cluster
    assert places[1] == far
    # one cluster only: the name moves to the nearest of its rows that is free
    points["cluster"] = np.repeat([0, 2, 1, 1], [20, 20, 30, 20])
    page = Page(
        texts=["t"] * 90, summary=summary, points=points, diversity=None,
        dedupe=None, groups=None, title="t", topics=topics,
    )  # fmt: skip
    x, y = page.topic_places(xy[:, 0], xy[:, 1])[1]
    assert x > 4 and ((xy[:, 0] == x) & (xy[:, 1] == y)).any()


@pytest.mark.parametrize("n", [5_000, pytest.param(50_000, marks=pytest.mark.slow)])
def test_browser_map_is_named_and_readable(browser, tmp_path, n):
    texts, X, clusterer = map_corpus(n)
    path = report(texts, X, clusterer=clusterer).save(tmp_path / f"map{n}.html")
    page = browser(path, timeout=300)
    assert page.evaluate(_POINTS_DRAWN) == n
    shown = page.evaluate(
        "Array.from(document.querySelectorAll('#et-map .annotation-text'))"
        ".map(function (e) { return e.textContent; })"
    )
    names = report_names(texts, X, clusterer)
    assert sorted(shown) == sorted(names)
    kinds = page.evaluate(
        "document.getElementById('et-map')._fullData.map(function (t) "
        "{ return t.type; })"
    )
    assert set(kinds) == {"scattergl" if n > 5_000 else "scatter"}
    shots = Path(os.environ.get("EMBEDTASKS_SHOTS", tmp_path))
    png = _screenshot(page, shots / f"map-{n}.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    # the topic view: every point drawn again, each topic named
    _choose_level(page, "topic")
    assert page.evaluate(_POINTS_DRAWN) == n
    topics = clone(clusterer).fit(X).topics(texts)
    assert sorted(page.evaluate(_SHOWN_NAMES)) == sorted(topics["name"])
    png = _screenshot(page, shots / f"map-topics-{n}.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    assert page.problems() == []


def _choose_level(page: _DevTools, level: str) -> None:
    """Pick clusters or topics in the map's selector; wait until drawn."""
    page.evaluate(
        "(function () { var s = document.getElementById('et-level');"
        f" s.value = '{level}'; s.dispatchEvent(new Event('change')); }})()"
    )
    deadline = time.monotonic() + 60
    while page.evaluate("document.body.dataset.level") != level:
        assert time.monotonic() < deadline, page.problems()
        time.sleep(0.05)


_SHOWN_NAMES = (
    "Array.from(document.querySelectorAll('#et-map .annotation-text'))"
    ".map(function (e) { return e.textContent; })"
)
_LEGEND = (
    "Array.from(document.querySelectorAll('#et-map .legendtext'))"
    ".map(function (e) { return e.textContent; })"
)
_GROUPS = "finance travel health music sport weather".split()


def two_level_corpus(n: int, seed: int = 0):
    """6 groups of 5 clusters (each cluster's direction: its group's plus its
    own), texts named by group and cluster, and KMeans that finds the 30."""
    rng = np.random.default_rng(seed)
    dim = 40
    cluster = np.arange(n) % 30
    group = cluster // 5
    directions = np.eye(dim)[group] + 0.8 * np.eye(dim)[6 + cluster]
    X = (directions + 0.05 * rng.normal(size=(n, dim))).astype(np.float32)
    texts = [
        f"{_GROUPS[g]} {_NOUNS[c]} question {i}"
        for i, (g, c) in enumerate(zip(group, cluster, strict=True))
    ]
    clusterer = EmbeddingClusterer(n_clusters=30, reduction=None, random_state=0)
    return texts, X, group, clusterer


def test_browser_switches_the_map_between_clusters_and_topics(browser, tmp_path):
    texts, X, group, clusterer = two_level_corpus(1_500)
    report_ = report(texts, X, clusterer=clusterer)
    assert adjusted_rand_score(group, report_.points["topic"]) == 1.0
    topics = report_.topics
    assert topics["name"].str.split().str[0].tolist() == [
        _GROUPS[group[report_.points["topic"] == t][0]] for t in topics["topic"]
    ]
    cluster_names = report_names(texts, X, clusterer)
    page = browser(report_.save(tmp_path / "levels.html"))
    options = page.evaluate(
        "Array.from(document.querySelectorAll('#et-level option'))"
        ".map(function (o) { return o.textContent; })"
    )
    assert options == ["clusters (30)", "topics (6)"]
    assert page.evaluate(_POINTS_DRAWN) == 1_500
    assert sorted(page.evaluate(_SHOWN_NAMES)) == sorted(cluster_names)
    _screenshot(page, tmp_path / "clusters.png")

    _choose_level(page, "topic")
    assert page.evaluate(_POINTS_DRAWN) == 1_500
    assert sorted(page.evaluate(_SHOWN_NAMES)) == sorted(topics["name"])
    sizes = topics.set_index("name")["size"]
    assert sorted(page.evaluate(_LEGEND)) == sorted(
        f"{name} ({size:,})" for name, size in sizes.items()
    )
    png = _screenshot(page, tmp_path / "topics.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    # the hover names the topic and the cluster; a topic's row lights it up
    hover = page.evaluate(
        "(function () { var gd = document.getElementById('et-map');"
        " var t = gd.data.findIndex(function (d) { return d.visible === true; });"
        " Plotly.Fx.hover(gd, [{curveNumber: t, pointNumber: 0}]);"
        " return document.querySelector('#et-map .hoverlayer').textContent; })()"
    )
    first = int(topics["clusters"][0][0])
    assert f"{topics['name'][0]} › {cluster_names[first]}" in hover
    lit = page.evaluate(_click_and_count('tr.pick[data-topic="2"]'))
    assert sum(lit["topic"]) == sum(lit["cluster"]) == topics["size"][2]
    assert sorted(lit["topic"])[-1] == topics["size"][2]
    cells = page.evaluate(
        "Array.from(document.querySelectorAll('#clusters thead th'))"
        ".map(function (e) { return e.textContent; })"
    )
    assert cells[:3] == ["cluster", "name", "topic"]

    _choose_level(page, "cluster")
    assert page.evaluate(_POINTS_DRAWN) == 1_500
    assert sorted(page.evaluate(_SHOWN_NAMES)) == sorted(cluster_names)
    assert page.problems() == []


def report_names(texts, X, clusterer):
    fitted = clone(clusterer).fit(X)
    frame = fitted.summary(texts)
    return frame.loc[frame["cluster"] >= 0, "name"].tolist()
