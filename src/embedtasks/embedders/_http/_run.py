"""One embed call of an :class:`~embedtasks.embedders._http._client.EmbeddingClient`:
packing, workers, retries, errors, decoding."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import numpy.typing as npt

from embedtasks._kernel import pool_chunks
from embedtasks.embedders._http._pacing import Pacer, SqlitePaceStore, open_store
from embedtasks.embedders._http._settings import (
    UsageStats,
)
from embedtasks.embedders._http._tokens import (
    BYTES_PER_TOKEN,
)
from embedtasks.embedders._http._transport import (
    RETRY_STATUSES,
    SPLIT_STATUSES,
    BadVector,
    Malformed,
    TooLarge,
    about_inputs,
    asks_for_floats,
    decode_body,
    max_response_bytes,
    post_bounded,
    quota_exhausted,
    retry_after,
    server_message,
)
from embedtasks.embedders._secrets import (
    redact,
)
from embedtasks.exceptions import (
    BudgetExceededError,
    EmbeddingAPIError,
    TextTooLongError,
)

if TYPE_CHECKING:
    from embedtasks.embedders._http._client import EmbeddingClient

__all__ = ["OnBatch"]

OnBatch = Callable[[npt.NDArray[np.intp], npt.NDArray[np.float32]], None]


class _Stop(Exception):
    """Internal: a worker stops because the run is over (fatal error elsewhere)."""


class _Run:
    """State of one embed call: pieces, batches, output matrix, counters."""

    def __init__(
        self,
        client: EmbeddingClient,
        texts: list[str],
        on_batch: OnBatch | None,
        rows: Sequence[int] | None,
    ) -> None:
        self.c = client
        self.s = client.settings
        self.texts = texts
        self.on_batch = on_batch
        self.user_rows = None if rows is None else np.asarray(rows, dtype=np.intp)
        self.stats = UsageStats(texts=len(texts))
        self.out: npt.NDArray[np.float32] | None = None
        self.fatal: BaseException | None = None
        self.n_done = 0
        self.budget_used = 0
        self.budget_stop = False
        self._reserved: dict[int, int] = {}  # first piece of a batch -> tokens
        self._ever_connected = False
        self._started = time.perf_counter()
        self._deadline_mono = (
            None if self.s.deadline is None else time.monotonic() + self.s.deadline
        )
        self._counted_estimate = 0
        self._counted_real = 0
        self._prepare()

    # -- packing -----------------------------------------------------------------
    def _prepare(self) -> None:
        s, tokens = self.s, self.c.tokens
        counts = tokens.count(self.texts)
        limit = s.max_tokens_per_input
        long_rows = np.flatnonzero(counts > limit)
        self.cut_pieces: set[int] = set()
        if long_rows.size == 0 or (s.long_text == "error" and not tokens.exact):
            # One piece per text (with the byte bound an "over-long" text may be
            # fine: the server decides, and a rejection names the row).
            self.piece_text = self.texts
            self.piece_owner: npt.NDArray[np.intp] | None = None
            self.piece_tokens = counts
        elif s.long_text == "error":
            row = int(long_rows[0])
            raise TextTooLongError(
                f"Text at row {self._user_row(row)} has {int(counts[row])} tokens "
                f"({tokens.name}), over the limit of {limit} per input for model "
                f"{s.model!r}. Shorten it, or set long_text='truncate' or "
                "long_text='chunk'.",
                row=self._user_row(row),
                n_tokens=int(counts[row]),
                limit=limit,
            )
        else:
            # The byte bound counts ~4x the real tokens of prose: cut at the
            # typical rate when truncating (a server refusal halves the piece).
            cut = limit
            if s.long_text == "truncate" and not tokens.exact:
                cut = limit * BYTES_PER_TOKEN
            texts: list[str] = []
            owners: list[int] = []
            piece_tokens: list[int] = []
            long_set = set(long_rows.tolist())
            for i, text in enumerate(self.texts):
                if i in long_set and (tokens.exact or counts[i] > cut):
                    pieces = tokens.split(text, cut)
                    if s.long_text == "truncate":
                        pieces = pieces[:1]
                        self.cut_pieces.add(len(texts))
                else:
                    pieces = [(text, int(counts[i]))]
                for piece, n_tok in pieces:
                    texts.append(piece)
                    owners.append(i)
                    piece_tokens.append(n_tok)
            self.piece_text = texts
            self.piece_owner = np.asarray(owners, dtype=np.intp)
            self.piece_tokens = np.asarray(piece_tokens, dtype=np.int64)
            self.pieces_per_text = np.bincount(
                self.piece_owner, minlength=len(self.texts)
            )
        self.batches = self._pack()

    def _pack(self) -> list[npt.NDArray[np.intp]]:
        batches: list[npt.NDArray[np.intp]] = []
        start, total = 0, 0
        max_n, max_tok = self.s.batch_size, self.s.max_tokens_per_request
        for i, n_tok in enumerate(self.piece_tokens.tolist()):
            if i > start and (i - start >= max_n or total + n_tok > max_tok):
                batches.append(np.arange(start, i))
                start, total = i, 0
            total += n_tok
        if len(self.piece_tokens) > start:
            batches.append(np.arange(start, len(self.piece_tokens)))
        return batches

    def _token_ratio(self) -> float:
        """Real tokens per counted token, from the server's ``usage`` (<= 1).

        The byte bound over-counts; pacing to a tokens-per-minute limit with it
        would waste most of the budget, so pacing uses what the server reports.
        """
        if self._counted_estimate <= 0 or self._counted_real <= 0:
            return 1.0
        return min(1.0, self._counted_real / self._counted_estimate)

    def _user_row(self, text: int) -> int:
        return int(text if self.user_rows is None else self.user_rows[text])

    def _row(self, piece: int) -> int:
        text = piece if self.piece_owner is None else int(self.piece_owner[piece])
        return self._user_row(text)

    # -- running -------------------------------------------------------------------
    async def run(self) -> npt.NDArray[np.float32]:
        queue = deque(self.batches)
        pacer = Pacer(
            self.s.requests_per_minute,
            self.s.tokens_per_minute,
            max_concurrency=self.s.max_concurrency,
            store=open_store(self.s.pacing_dir, self.s.base_url, self.s.model),
        )
        self.pacer = pacer
        async with httpx.AsyncClient(**self.c._client_kwargs()) as http:

            async def worker() -> None:
                while queue and self.fatal is None:
                    batch = queue.popleft()
                    if not self._within_budget(batch):
                        queue.clear()
                        break
                    await self._guarded_send(http, batch)

            tasks: list[asyncio.Future[None]] = []
            try:
                if (
                    queue
                    and not self.c.tokens.exact
                    and (self.s.tokens_per_minute or self.s.max_tokens)
                ):
                    # Probe: learn real tokens per counted token (``usage``)
                    # before reserving tokens-per-minute budget for many requests.
                    batch = queue.popleft()
                    if self._within_budget(batch):
                        await self._guarded_send(http, batch)
                    else:
                        queue.clear()
                n_workers = max(1, min(self.s.max_concurrency, len(queue)))
                tasks = [asyncio.ensure_future(worker()) for _ in range(n_workers)]
                await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                self.stats.seconds = time.perf_counter() - self._started
                self.c.last_stats = self.stats
                if isinstance(pacer.store, SqlitePaceStore):
                    pacer.store.close()
        if self.fatal is not None:
            raise self.fatal
        if self.budget_stop:
            raise BudgetExceededError(
                f"Stopped before exceeding max_tokens={self.s.max_tokens}: "
                f"{self.budget_used} tokens spent, {self.n_done} of "
                f"{len(self.texts)} texts embedded (they are cached; run again "
                "with a larger max_tokens to continue). See estimate() for the "
                "cost of the rest.",
                max_tokens=self.s.max_tokens or 0,
                tokens_used=self.budget_used,
                n_embedded=self.n_done,
            )
        return await self._finish()

    def _within_budget(self, batch: npt.NDArray[np.intp]) -> bool:
        """Reserve the batch's tokens; False (and stop) if the budget is spent.

        A reservation becomes the real count (the server's ``usage``) once the
        batch is answered.
        """
        if self.s.max_tokens is None:
            return True
        cost = math.ceil(int(self.piece_tokens[batch].sum()) * self._token_ratio())
        if self.budget_used + cost > self.s.max_tokens:
            self.budget_stop = True
            return False
        self.budget_used += cost
        self._reserved[int(batch[0])] = cost
        return True

    async def _guarded_send(
        self, http: httpx.AsyncClient, batch: npt.NDArray[np.intp]
    ) -> None:
        """Send; a fatal error stops new requests but lets others finish."""
        try:
            await self._send(http, batch)
        except _Stop:
            pass
        except (EmbeddingAPIError, TextTooLongError) as exc:
            if self.fatal is None:
                self.fatal = exc

    async def _finish(self) -> npt.NDArray[np.float32]:
        out = self.out
        assert out is not None  # every batch succeeded, so a width is known
        if self.piece_owner is None:
            return out
        owners = self.piece_owner
        n = len(self.texts)
        counts = self.pieces_per_text
        if (counts == 1).all():
            return out  # truncation only: one piece per text, in order
        result = pool_chunks(out, owners, self.piece_tokens, n)
        multi = np.flatnonzero(counts > 1)
        if self.on_batch is not None:
            await asyncio.to_thread(self.on_batch, multi, result[multi])
        return result

    def _delay(self, attempt: int, server: float | None) -> float:
        if server is not None:
            return min(server, self.s.max_backoff)
        cap = min(self.s.max_backoff, self.s.backoff * 2.0 ** (attempt - 1))
        return random.uniform(cap / 2, cap) if cap > 0 else 0.0

    def _deadline_error(self) -> EmbeddingAPIError:
        return self.c._error(
            f"Embedding did not finish within deadline={self.s.deadline:g} s "
            f"({self.n_done} of {len(self.texts)} texts done; they are cached). "
            f"The endpoint {self.c.display_url} is slower than that (rate "
            "limited or overloaded): raise deadline, or run again to continue."
        )

    async def _sleep(self, seconds: float) -> None:
        remaining = self._remaining()
        if remaining is not None and seconds > remaining:
            raise self._deadline_error()
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _send(self, http: httpx.AsyncClient, batch: npt.NDArray[np.intp]) -> None:
        c, s, pacer = self.c, self.s, self.pacer
        tokens = int(self.piece_tokens[batch].sum())
        attempt = 0
        while True:
            inputs = [self.piece_text[i] for i in batch.tolist()]
            ticket = await self._turn(tokens)
            failure: str
            response: httpx.Response | None = None
            server_delay: float | None = None
            try:
                response, failure_or_none = await self._post(http, inputs, len(batch))
            finally:
                pacer.release()
            if response is None:
                failure = failure_or_none or "no answer"
            else:
                self._ever_connected = True
                self.stats.requests += 1
                pacer.learn(response.headers)
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        real = self._decode(response, batch)
                    except BadVector as exc:
                        failure = (
                            f"malformed response body ({exc}: the text at row "
                            f"{self._row(batch[exc.index])}; not cached)"
                        )
                    except Malformed as exc:
                        failure = f"malformed response body ({exc})"
                    else:
                        pacer.succeeded(ticket, real, response.headers)
                        if self.s.max_tokens is not None:
                            held = self._reserved.pop(int(batch[0]), 0)
                            self.budget_used += real - held
                        self.n_done += len(batch)
                        await self._report(batch)
                        return
                elif status == 429:
                    self.stats.rate_limited += 1
                    server_delay = retry_after(response.headers)
                    message = server_message(response)
                    if quota_exhausted(response):
                        raise self._api_error(response, batch)
                    delay = self._delay(attempt + 1, server_delay)
                    pacer.rate_limited(
                        ticket,
                        response.headers,
                        response.text,
                        delay,
                        math.ceil(tokens * self._token_ratio()),
                    )
                    failure = f"429 {response.reason_phrase}" + (
                        f" ({message[:200]!r})" if message else ""
                    )
                    attempt += 1
                    if attempt > s.max_retries:
                        raise self._gave_up(batch, failure, response)
                    self.stats.retries += 1
                    remaining = self._remaining()
                    if remaining is not None and remaining <= 0:
                        raise self._deadline_error()
                    continue  # the pacer waits the pause out
                elif status in RETRY_STATUSES or status >= 500:
                    failure = f"{status} {response.reason_phrase}"
                    server_delay = retry_after(response.headers)
                elif (
                    status in SPLIT_STATUSES
                    and not c._float_format
                    and asks_for_floats(response)
                ):
                    c._float_format = True
                    continue
                elif status in SPLIT_STATUSES and about_inputs(response):
                    if len(batch) > 1:
                        if self.s.max_tokens is not None:  # halves pay as they go
                            self.budget_used -= self._reserved.pop(int(batch[0]), 0)
                        self.stats.split_batches += 1
                        half = len(batch) // 2
                        await self._send(http, batch[:half])
                        await self._send(http, batch[half:])
                        return
                    if self._shorten(int(batch[0])):
                        continue
                    raise self._api_error(response, batch)
                else:
                    raise self._api_error(response, batch)
            attempt += 1
            if attempt > s.max_retries:
                raise self._gave_up(batch, failure, response)
            self.stats.retries += 1
            await self._sleep(self._delay(attempt, server_delay))

    async def _turn(self, tokens: int) -> Any:
        """Wait for the pacer's go-ahead to send ``tokens``; return its ticket."""
        if self.fatal is not None:
            raise _Stop
        remaining = self._remaining()
        try:
            ticket = await self.pacer.acquire(
                lambda: math.ceil(tokens * self._token_ratio()),
                None if remaining is None else time.time() + remaining,
            )
        except TimeoutError:
            ticket = None
        if ticket is None:
            raise self._deadline_error()
        if self.fatal is not None:  # failed while this one waited its turn
            self.pacer.release()
            raise _Stop
        return ticket

    def _remaining(self) -> float | None:
        if self._deadline_mono is None:
            return None
        return self._deadline_mono - time.monotonic()

    async def _post(
        self, http: httpx.AsyncClient, inputs: list[str], n: int
    ) -> tuple[httpx.Response | None, str | None]:
        """Send one request: (answer, None), or (None, why it failed) to retry.

        Nothing raised here holds the request (whose headers hold the key):
        errors are built after the ``except`` blocks, so that neither their
        ``__cause__`` nor their ``__context__`` points at an httpx error.
        """
        c, s = self.c, self.s
        remaining = self._remaining()
        timeout = (
            s.timeout if remaining is None else max(0.0, min(s.timeout, remaining))
        )
        fatal: str | None = None
        failure: str | None = None
        by_deadline = remaining is not None and remaining < s.timeout
        try:
            response = await post_bounded(
                http,
                "embeddings",
                c._payload(inputs),
                timeout=timeout,
                max_bytes=max_response_bytes(n),
            )
            self._ever_connected = True
            return response, None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            fatal = (
                f"Cannot send to {c.display_url}/embeddings: {exc}. Check "
                "base_url (e.g. 'https://api.openai.com/v1')."
            )
        except httpx.ConnectError as exc:
            if not self._ever_connected:
                fatal = (
                    f"Cannot connect to {c.display_url}/embeddings: {exc}. "
                    "Check that the server is running and that base_url "
                    "(host and port) is right."
                )
            failure = f"{type(exc).__name__}: {exc}"
        except TooLarge:
            fatal = (
                f"The answer of {c.display_url}/embeddings for {n} inputs was "
                f"larger than {max_response_bytes(n) / 2**20:,.0f} MiB once "
                "decoded, far more than embeddings take: the server misbehaves, "
                "or base_url points at another service. Check base_url."
            )
        except (TimeoutError, httpx.TimeoutException):
            self._ever_connected = True
            if by_deadline:
                fatal = "deadline"
            failure = (
                f"no complete answer within timeout={s.timeout:g} s (the whole "
                "request, not each read)"
            )
        except (httpx.HTTPError, httpx.StreamError) as exc:  # drops, bad gzip...
            self._ever_connected = True
            failure = f"{type(exc).__name__}: {exc}"
        except (UnicodeError, ValueError, TypeError) as exc:
            fatal = (
                f"Cannot build the request to {c.display_url}/embeddings: "
                f"{type(exc).__name__} (a header or the URL holds a character "
                "HTTP cannot carry). Check headers and base_url."
            )
        if fatal == "deadline":
            raise self._deadline_error()
        if fatal is not None:
            raise c._error(fatal)
        return None, redact(failure or "no answer", c._secrets)

    def _shorten(self, piece: int) -> bool:
        """Halve a truncated piece the server found too long; False if none."""
        if piece not in self.cut_pieces:
            return False
        text = self.piece_text[piece]
        if len(text.encode("utf-8")) <= self.s.max_tokens_per_input:
            return False  # already within the byte bound: the server's word
        half, n_tok = self.c.tokens.split(text, max(1, len(text.encode()) // 2))[0]
        if isinstance(self.piece_text, list) and self.piece_text is not self.texts:
            self.piece_text[piece] = half
            self.piece_tokens[piece] = n_tok
            return True
        return False  # pragma: no cover - cut pieces always live in a copy

    def _gave_up(
        self, batch: npt.NDArray[np.intp], failure: str, response: httpx.Response | None
    ) -> EmbeddingAPIError:
        s = self.s
        return self.c._error(
            f"Embedding request to {self.c.display_url}/embeddings (model "
            f"{s.model!r}, {len(batch)} inputs from row {self._row(batch[0])}) "
            f"still failed after {s.max_retries} retries; last error: {failure}. "
            "Check that the server is up and reachable; raise max_retries if it "
            "is overloaded.",
            status_code=None if response is None else response.status_code,
            response=response,
        )

    def _api_error(
        self, response: httpx.Response, batch: npt.NDArray[np.intp]
    ) -> EmbeddingAPIError:
        c, s = self.c, self.s
        status = response.status_code
        about_input = status in SPLIT_STATUSES and about_inputs(response)
        row = self._row(batch[0]) if len(batch) == 1 and about_input else None
        if status in (401, 403):
            hint = (
                "Check the API key: set the environment variable named by "
                "api_key_env (OPENAI_API_KEY by default) or pass api_key"
            )
        elif status == 404:
            hint = "Check base_url and model (an Azure base_url names the deployment)"
        elif status == 429:
            hint = (
                "The account's quota is spent, so retrying cannot help: check the "
                "plan and billing of this key"
            )
        elif row is not None:
            hint = (
                f"The server rejected the text at row {row} on its own: fix or drop "
                "it (if it is too long, set long_text='truncate' or 'chunk')"
            )
        else:
            hint = (
                "The request itself was refused, not a text: check its parameters "
                f"(model={s.model!r}, dimensions={s.dimensions!r}, api_version="
                f"{s.api_version!r})"
            )
        where = f" (text at row {row})" if row is not None else ""
        return c._error(
            f"Embedding request to {c.display_url}/embeddings failed with {status} "
            f"{response.reason_phrase}{where} for model {s.model!r}. Server said: "
            f"{server_message(response)[:300]!r}. {hint}.",
            status_code=status,
            response=response,
            row=row,
        )

    def _decode(self, response: httpx.Response, batch: npt.NDArray[np.intp]) -> int:
        """Check a 2xx body, write its vectors into ``self.out``; real tokens."""
        width = None if self.out is None else self.out.shape[1]
        vectors, prompt_tokens = decode_body(response, len(batch), width)
        if self.out is None:
            self.out = np.empty(
                (len(self.piece_text), vectors[0].size), dtype=np.float32
            )
        self.out[batch] = np.stack(vectors)
        counted = int(self.piece_tokens[batch].sum())
        if prompt_tokens is not None:
            self.stats.tokens += prompt_tokens
            self._counted_estimate += counted
            self._counted_real += prompt_tokens
            return prompt_tokens
        self.stats.tokens += counted
        return counted

    async def _report(self, batch: npt.NDArray[np.intp]) -> None:
        if self.on_batch is None:
            return
        assert self.out is not None
        if self.piece_owner is None:
            positions, vectors = batch, self.out[batch]
        else:
            owners = self.piece_owner
            single = batch[self.pieces_per_text[owners[batch]] == 1]
            positions, vectors = owners[single], self.out[single]
        if len(positions):
            await asyncio.to_thread(self.on_batch, positions, vectors)
