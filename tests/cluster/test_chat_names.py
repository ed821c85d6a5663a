"""Cluster names from a chat model: a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd
import pytest

from embedtasks import ChatNamer, EmbeddingClusterer
from embedtasks.cli import main

TOPICS = ["card delivery", "refund seller", "pin blocked", "exchange rate", "cash atm"]


class ChatServer:
    """``/v1/chat/completions`` on a free port: names from the prompt's keywords.

    ``mode``: "ok" (a JSON name from the first keyword), "same" (one name for
    every cluster), "fail" (500 every time), "plain" (no JSON mode: 400 when
    asked for it, then a bare text answer), "junk" (an answer that is no name).
    """

    def __init__(self, mode: str = "ok", api_key: str | None = None) -> None:
        self.mode = mode
        self.api_key = api_key
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, answer = server.answer(self.path, dict(self.headers), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, path: str, headers: dict[str, str], body: dict[str, Any]):
        with self.lock:
            self.calls.append(body)
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": "not found"}}
        if self.api_key and headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"message": "bad key"}}
        if self.mode == "fail":
            return 500, {"error": {"message": "The server had an error."}}
        if self.mode == "plain" and "response_format" in body:
            return 400, {"error": {"message": "response_format is not supported"}}
        assert body["temperature"] == 0
        prompt = body["messages"][-1]["content"]
        first = prompt.split("Keywords: ")[1].split(",")[0].split("\n")[0]
        name = {"same": "Banking questions", "junk": ""}.get(
            self.mode, f"Questions about {first}"
        )
        content = name if self.mode == "plain" else json.dumps({"name": name})
        return 200, {
            "choices": [{"message": {"role": "assistant", "content": content}}]
        }

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server() -> Iterator[Any]:
    servers: list[ChatServer] = []

    def start(mode: str = "ok", api_key: str | None = None) -> ChatServer:
        servers.append(ChatServer(mode, api_key))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _corpus(per_topic: int = 30):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(TOPICS), 24))
    y = np.repeat(np.arange(len(TOPICS)), per_topic)
    X = centres[y] + 0.3 * rng.normal(size=(y.size, 24))
    texts = [f"{TOPICS[t]} question {i} about my {TOPICS[t]}" for i, t in enumerate(y)]
    return X.astype(np.float32), texts


def _fitted():
    X, texts = _corpus()
    model = EmbeddingClusterer(reduction="pca", n_components=4, random_state=0)
    return model.fit(X), texts


def test_chat_names_are_cached_distinct_and_cheap(chat_server, tmp_path, monkeypatch):
    server = chat_server(api_key="sk-test-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    model, texts = _fitted()
    namer = ChatNamer("chat-m", base_url=server.url, cache_dir=tmp_path)
    before = namer.estimate(_records(model, texts))
    assert before == {**before, "calls": model.n_clusters_, "cached": 0}
    frame = model.summary(texts, namer=namer)
    named = frame[frame["cluster"] >= 0]
    assert len(server.calls) <= model.n_clusters_
    assert named["name"].str.startswith("Questions about ").all()
    assert named["name"].nunique() == model.n_clusters_
    assert (named["keyword_name"] != named["name"]).all()
    # what the model saw: keywords and a few representatives, cut short
    prompt = server.calls[0]["messages"][-1]["content"]
    assert "Keywords: " in prompt and prompt.count("\n- ") <= 3
    # a second run (a new namer, same cache) costs no call
    again = ChatNamer("chat-m", base_url=server.url, cache_dir=tmp_path)
    assert again.estimate(_records(model, texts))["calls"] == 0
    second = model.summary(texts, namer=again)
    assert len(server.calls) == model.n_clusters_ and again.last_stats.calls == 0
    pd.testing.assert_frame_equal(second, frame)
    # the key never shows
    for shown in (repr(namer), str(vars(namer.settings)), repr(namer.settings)):
        assert "sk-test-secret" not in shown
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(namer)


def _records(model, texts):
    frame = model.summary(texts)
    frame = frame[frame["cluster"] >= 0]
    return [
        {"name": r["name"], "keywords": r["keywords"],
         "texts": r["representative_texts"], "size": r["size"]}
        for r in frame.to_dict("records")
    ]  # fmt: skip


def test_only_the_largest_clusters_are_sent(chat_server, tmp_path):
    server = chat_server()
    model, texts = _fitted()
    namer = ChatNamer("m", base_url=server.url, cache_dir=tmp_path, max_clusters=2)
    frame = model.summary(texts, namer=namer)
    assert len(server.calls) == 2
    named = frame[frame["cluster"] >= 0]
    assert named["name"].iloc[:2].str.startswith("Questions about ").all()
    assert (named["name"].iloc[2:] == named["keyword_name"].iloc[2:]).all()


def test_near_identical_chat_names_are_renamed(chat_server, tmp_path):
    server = chat_server("same")
    model, texts = _fitted()
    frame = model.summary(texts, namer=ChatNamer("m", base_url=server.url))
    names = frame.loc[frame["cluster"] >= 0, "name"]
    assert names.nunique() == model.n_clusters_
    assert names.str.startswith("Banking questions").all()


@pytest.mark.parametrize("mode", ["fail", "junk"])
def test_a_failing_server_leaves_keyword_names(chat_server, tmp_path, mode):
    server = chat_server(mode)
    model, texts = _fitted()
    namer = ChatNamer(
        "m", base_url=server.url, cache_dir=tmp_path, max_retries=1, deadline=30
    )
    frame = model.summary(texts, namer=namer)
    assert (frame["name"] == frame["keyword_name"]).all()
    assert frame["name"].nunique() == len(frame)
    assert namer.last_stats.failed == model.n_clusters_ and namer.last_errors
    assert len(server.calls) <= 2 * model.n_clusters_  # one retry each, at most
    # nothing was cached: the next run asks again
    assert namer.estimate(_records(model, texts))["calls"] == model.n_clusters_


def test_unreachable_server_and_plain_text_answers(chat_server, tmp_path):
    model, texts = _fitted()
    dead = ChatNamer("m", base_url="http://127.0.0.1:9/v1", cache_dir=None)
    frame = model.summary(texts, namer=dead)
    assert (frame["name"] == frame["keyword_name"]).all()
    assert "cannot connect" in dead.last_errors[0]
    plain = chat_server("plain")
    namer = ChatNamer("m", base_url=plain.url, cache_dir=None)
    frame = model.summary(texts, namer=namer)
    assert frame.loc[frame["cluster"] >= 0, "name"].str.startswith("Questions").all()


def test_summary_needs_texts_for_a_namer():
    model, _ = _fitted()
    with pytest.raises(ValueError, match="a namer needs the texts"):
        model.summary(namer=ChatNamer("m", base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(ValueError, match="max_clusters must be an int >= 1"):
        ChatNamer("m", max_clusters=0)


def test_cli_cluster_names_with_chat(chat_server, fake_server, tmp_path, capsys):
    chat = chat_server()
    embed = fake_server(dim=16)
    # the fake server's vectors are a hash of the text: copies make the clusters
    texts = [f"where is my {topic}?" for topic in TOPICS for _ in range(12)]
    src = tmp_path / "rows.csv"
    pd.DataFrame({"text": texts}).to_csv(src, index=False)
    out = tmp_path / "summary.csv"
    argv = [
        "cluster", str(src), "--base-url", embed.url, "--model", "fake",
        "--reduction", "pca", "--min-cluster-size", "5", "--names", "chat",
        "--chat-model", "chat-m", "--chat-base-url", chat.url,
        "--cache-dir", str(tmp_path / "cache"), "--summary-output", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "calls" in err and "names from chat-m" in err, err
    first = len(chat.calls)
    assert first >= 1, err
    names = pd.read_csv(out)["name"]
    assert names[names != "noise"].str.startswith("Questions about").all()
    assert main(argv) == 0  # a second run: every name from the cache
    assert len(chat.calls) == first
    assert "0 calls" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["cluster", str(src), "--names", "gpt"])
    assert main(["cluster", str(src), "--names", "chat"]) == 2
    assert "--chat-model" in capsys.readouterr().err
