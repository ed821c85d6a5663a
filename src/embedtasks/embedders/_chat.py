"""Cluster names from an OpenAI-compatible ``/chat/completions`` model.

:class:`ChatNamer` is what ``EmbeddingClusterer.summary(texts, namer=...)`` and
``embedtasks cluster|report --names chat`` call. It reuses the embedder's HTTP
machinery (:class:`~embedtasks.embedders._http.ClientSettings` for the URL, the
key from the environment, timeouts, retries and deadline; the
:class:`~embedtasks.embedders._http._pacing.Pacer` shared with other processes;
the same key-free errors) and spends little:

* only the largest clusters, up to ``max_clusters``, are named by the model;
* one call per cluster: its keywords and a few representatives, each cut to
  ``max_chars`` characters; ``temperature=0`` and a JSON answer
  (``{"name": ...}``);
* answers are cached on their content (model, endpoint, prompt) in
  ``cache_dir/names``: a re-run costs no call;
* :meth:`ChatNamer.estimate` says what a run would send before it does;
* a failure (the server down, a refusal, an answer that is not a name) leaves
  that cluster its keyword name; near-identical names get a keyword more.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from embedtasks._cachedir import resolve_cache_dir
from embedtasks.embedders._http._client import EmbeddingClient
from embedtasks.embedders._http._pacing import Pacer, open_store
from embedtasks.embedders._http._settings import ClientSettings
from embedtasks.embedders._http._transport import RETRY_STATUSES, retry_after
from embedtasks.embedders._secrets import Secret

__all__ = ["ChatNamer"]

#: Bumped when the prompt changes (cached names of the old prompt are not reused).
_PROMPT_VERSION = 1
_SYSTEM = (
    "You name clusters of texts for a report. Given a cluster's keywords and a "
    'few of its texts, answer with a JSON object {"name": "..."}: a short '
    "topic label of 2 to 5 words that a person would write, in the texts' "
    "language, without quotes, numbering or the word 'cluster'."
)
_MAX_NAME_CHARS = 60


@dataclass
class NamingStats:
    """What the last :meth:`ChatNamer.name` did."""

    calls: int = 0
    cached: int = 0
    failed: int = 0
    renamed: int = 0


class ChatNamer:
    """Name clusters with an OpenAI-compatible chat model, cheaply.

    Parameters
    ----------
    model : str
        The chat model, e.g. ``"gpt-4o-mini"``.
    base_url : str, optional
        The endpoint (``$OPENAI_BASE_URL``, else OpenAI's).
    api_key_env : str, default="OPENAI_API_KEY"
        The environment variable holding the key (it is never shown).
    max_clusters : int, default=30
        Name at most this many clusters (the largest); the others keep their
        keyword names.
    n_representatives : int, default=3
        Texts shown to the model per cluster.
    max_chars : int, default=400
        Each text is cut to this many characters.
    cache_dir : "default", str, path or None, default="default"
        Where answers are kept (``names/`` of the embedtasks cache folder).
    timeout, max_retries, deadline, max_concurrency, requests_per_minute
        As for :class:`~embedtasks.OpenAIEmbedder`.
    transport : httpx transport, optional
        For tests.

    Examples
    --------
    >>> namer = ChatNamer("gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
    >>> clusters = [{"name": "card delivery", "keywords": ["card", "delivery"],
    ...              "texts": ["Where is my card?"], "size": 40}]
    >>> namer.estimate(clusters)["calls"]
    1
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_clusters: int = 30,
        n_representatives: int = 3,
        max_chars: int = 400,
        cache_dir: Any = "default",
        timeout: float = 60.0,
        max_retries: int = 4,
        deadline: float | None = 300.0,
        max_concurrency: int = 4,
        requests_per_minute: float | None = None,
        transport: Any = None,
    ) -> None:
        for name, value in (
            ("max_clusters", max_clusters),
            ("n_representatives", n_representatives),
            ("max_chars", max_chars),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"ChatNamer: {name} must be an int >= 1, got {value!r}."
                )
        key = os.environ.get(api_key_env)
        self.settings = ClientSettings(
            model=model,
            base_url=base_url or os.environ.get("OPENAI_BASE_URL") or "",
            api_key=Secret(key) if key else None,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
        )
        self.model = model
        self.max_clusters = max_clusters
        self.n_representatives = n_representatives
        self.max_chars = max_chars
        folder = resolve_cache_dir(cache_dir)
        self.cache_folder = None if folder is None else Path(folder) / "names"
        self._http = EmbeddingClient(self.settings, transport=transport)
        self.display_url = self._http.display_url
        self.last_stats = NamingStats()
        self.last_errors: list[str] = []
        self._json_mode = True

    def __repr__(self) -> str:
        return f"ChatNamer(model={self.model!r}, base_url={self.display_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("ChatNamer is not picklable (it may hold an API key).")

    # ------------------------------------------------------------ public
    def estimate(self, clusters: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """What :meth:`name` would send: ``calls``, ``cached``, ``prompt_chars``.

        ``prompt_tokens`` is a rough count (4 characters a token).
        """
        chosen = list(clusters)[: self.max_clusters]
        prompts = [self._messages(c) for c in chosen]
        todo = [m for m in prompts if self._cached(m) is None]
        chars = sum(len(x["content"]) for m in todo for x in m)
        return {
            "calls": len(todo),
            "cached": len(prompts) - len(todo),
            "prompt_chars": chars,
            "prompt_tokens": chars // 4,
        }

    def name(self, clusters: Sequence[dict[str, Any]]) -> list[str]:
        """A name per cluster, in order (keyword names where the model is not used).

        ``clusters``: dicts with ``name`` (the keyword name), ``keywords``,
        ``texts`` (representatives, most central first) and ``size``, largest
        cluster first. Never raises for the server's sake: a cluster whose call
        fails keeps its keyword name (see :attr:`last_errors`).
        """
        clusters = list(clusters)
        names = [str(c["name"]) for c in clusters]
        stats = NamingStats()
        self.last_errors = []
        chosen = clusters[: self.max_clusters]
        prompts = [self._messages(c) for c in chosen]
        todo = []
        for i, messages in enumerate(prompts):
            hit = self._cached(messages)
            if hit is not None:
                names[i] = hit
                stats.cached += 1
            else:
                todo.append(i)
        if todo:
            answers = self._run([prompts[i] for i in todo], stats)
            for i, answer in zip(todo, answers, strict=True):
                if answer is None:
                    stats.failed += 1
                    continue
                names[i] = answer
                self._store(prompts[i], answer)
        names, stats.renamed = _distinct(names, clusters)
        self.last_stats = stats
        return names

    # ------------------------------------------------------------ prompt
    def _messages(self, cluster: dict[str, Any]) -> list[dict[str, str]]:
        texts = [
            _cut(" ".join(str(t).split()), self.max_chars)
            for t in list(cluster.get("texts") or [])[: self.n_representatives]
        ]
        keywords = ", ".join(str(k) for k in list(cluster.get("keywords") or [])[:8])
        lines = [f"Keywords: {keywords or '(none)'}", "Texts:"]
        lines += [f"- {t}" for t in texts]
        return [
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": "\n".join(lines)},
        ]

    def _key(self, messages: list[dict[str, str]]) -> str:
        blob = json.dumps(
            [_PROMPT_VERSION, self.model, self.display_url, messages], sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cached(self, messages: list[dict[str, str]]) -> str | None:
        if self.cache_folder is None:
            return None
        path = self.cache_folder / f"{self._key(messages)}.json"
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            return _clean(stored["name"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, messages: list[dict[str, str]], name: str) -> None:
        if self.cache_folder is None:
            return
        path = self.cache_folder / f"{self._key(messages)}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"name": name}), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:  # a read-only cache costs calls next time, not names
            pass

    # ------------------------------------------------------------ calls
    def _run(
        self, prompts: list[list[dict[str, str]]], stats: NamingStats
    ) -> list[str | None]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._arun(prompts, stats))
        with ThreadPoolExecutor(1, thread_name_prefix="embedtasks-names") as pool:
            return pool.submit(asyncio.run, self._arun(prompts, stats)).result()

    async def _arun(
        self, prompts: list[list[dict[str, str]]], stats: NamingStats
    ) -> list[str | None]:
        s = self.settings
        pacer = Pacer(
            s.requests_per_minute,
            None,
            max_concurrency=s.max_concurrency,
            store=open_store(None, s.base_url, s.model),
        )
        deadline = None if s.deadline is None else time.time() + s.deadline
        async with httpx.AsyncClient(**self._http._client_kwargs()) as http:
            jobs = [self._ask(http, pacer, m, stats, deadline) for m in prompts]
            return list(await asyncio.gather(*jobs))

    async def _ask(
        self,
        http: httpx.AsyncClient,
        pacer: Pacer,
        messages: list[dict[str, str]],
        stats: NamingStats,
        deadline: float | None,
    ) -> str | None:
        s = self.settings
        for attempt in range(s.max_retries + 1):
            try:
                ticket = await pacer.acquire(1, deadline)
            except TimeoutError:
                return self._fail(f"deadline of {s.deadline:g} s reached")
            payload: dict[str, Any] = {
                "model": s.model,
                "messages": messages,
                "temperature": 0,
            }
            if self._json_mode:
                payload["response_format"] = {"type": "json_object"}
            wait: float | None = None
            try:
                response = await http.post("chat/completions", json=payload)
            except httpx.TransportError as exc:
                pacer.release()
                if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol):
                    return self._fail(f"cannot connect to {self.display_url}")
                problem = f"{type(exc).__name__}"
            else:
                pacer.release()
                stats.calls += 1
                status = response.status_code
                if 200 <= status < 300:
                    pacer.succeeded(ticket, 1, response.headers)
                    name = _parse(response)
                    return name if name else self._fail("an answer that is no name")
                problem = f"{status} {response.reason_phrase}"
                if (
                    status == 400
                    and "response_format" in payload
                    and ("response_format" in response.text)
                ):
                    self._json_mode = False  # a server without JSON mode
                    continue
                if status not in RETRY_STATUSES and status < 500:
                    return self._fail(problem)
                wait = retry_after(response.headers)
                if status == 429:
                    pacer.rate_limited(
                        ticket, response.headers, response.text, wait or 1.0
                    )
            delay = wait if wait is not None else s.backoff * 2.0**attempt
            delay = min(s.max_backoff, delay) * (
                1.0 if wait else random.uniform(0.5, 1)
            )
            if deadline is not None and time.time() + delay > deadline:
                return self._fail(f"deadline of {s.deadline:g} s reached")
            await asyncio.sleep(delay)
        return self._fail(f"{problem} after {s.max_retries} retries")

    def _fail(self, why: str) -> str | None:
        """Note why a call gave no name; None (the keyword name stays)."""
        self.last_errors.append(why)
        return None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _parse(response: httpx.Response) -> str | None:
    """The name in a chat answer (JSON object, or plain text), or None."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if not isinstance(content, str):
        return None
    text = content.strip()
    fenced = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if fenced:
        try:
            value = json.loads(fenced.group(0)).get("name")
        except (ValueError, AttributeError):
            value = None
        return _clean(value) if isinstance(value, str) else None
    return _clean(text)  # a model that answers in plain text


def _clean(value: Any) -> str | None:
    """A usable name: one short line, without quotes or a "Cluster 3:" prefix."""
    if not isinstance(value, str):
        return None
    name: str = " ".join(value.strip().strip("\"'`*.").split())
    name = re.sub(r"^(?:cluster|topic|name)\s*\d*\s*[:\-]\s*", "", name, flags=re.I)
    if not name or len(name) > _MAX_NAME_CHARS:
        return None
    return name


def _norm(name: str) -> frozenset[str]:
    return frozenset(w.rstrip("s") for w in re.findall(r"\w+", name.lower()))


def _distinct(
    names: list[str], clusters: list[dict[str, Any]]
) -> tuple[list[str], int]:
    """Near-identical names (same words but for plurals) take a keyword more."""
    out: list[str] = []
    seen: set[frozenset[str]] = set()
    renamed = 0
    for name, cluster in zip(names, clusters, strict=True):
        if _norm(name) in seen:
            renamed += 1
            for keyword in cluster.get("keywords") or []:
                candidate = f"{name} ({keyword})"
                if _norm(candidate) not in seen and keyword.lower() not in name.lower():
                    name = candidate
                    break
            n = 2
            base = name
            while _norm(name) in seen:
                name = f"{base} {n}"
                n += 1
        seen.add(_norm(name))
        out.append(name)
    return out, renamed
