"""The settings of an :class:`._client.EmbeddingClient`, in one place.

:class:`ClientSettings` holds every option (the estimator's parameters of the same
names), validated once; :class:`UsageStats` counts what one call did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from embedtasks.embedders._secrets import Secret, check_url, mask_url

__all__ = ["DEFAULT_BASE_URL", "LONG_TEXT_POLICIES", "ClientSettings", "UsageStats"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LONG_TEXT_POLICIES = ("error", "truncate", "chunk")


@dataclass(frozen=True)
class ClientSettings:
    """Everything that configures an :class:`EmbeddingClient`, documented once.

    The fields share the names (and meaning) of
    :class:`~embedtasks.OpenAIEmbedder`'s parameters.

    Parameters
    ----------
    model : str
        Model name sent in each request.
    base_url : str, default="https://api.openai.com/v1"
        Endpoint root (``http://`` or ``https://``); requests go to
        ``{base_url}/embeddings``.
    api_key : str or Secret, optional
        Sent as ``Authorization: Bearer`` (or ``api-key`` with ``api_version``).
        Never shown in ``repr``, messages or exceptions.
    dimensions : int, optional
        Ask text-embedding-3 models for shorter vectors.
    api_version : str, optional
        Azure-style ``api-version`` query parameter.
    headers : mapping, optional
        Extra HTTP headers (values of key-like names are masked in messages).
    batch_size, max_tokens_per_request, max_tokens_per_input : int
        Packing limits: inputs per request, tokens per request, tokens per input.
    long_text : {"error", "truncate", "chunk"}, default="error"
        What to do with a text over ``max_tokens_per_input``.
    max_concurrency : int, default=8
        Most requests in flight (the pacer shrinks it after 429s).
    requests_per_minute, tokens_per_minute : float, optional
        Known limits; unknown ones are learned from 429s and headers.
    max_retries : int, default=8
        Retries per request for 429s, 5xx, timeouts, drops and malformed bodies
        (a 429 for an exhausted quota is not retried).
    timeout : float, default=60.0
        Seconds per request, from sending it to the last byte of the answer.
    backoff, max_backoff : float, default=0.5, 30.0
        First retry delay (doubled per attempt, full jitter) and its cap (also
        the cap on a server's Retry-After).
    deadline : float, optional
        Seconds the whole call may take; past it the call stops (finished rows
        are kept) with :class:`~embedtasks.exceptions.EmbeddingAPIError`.
    max_tokens : int, optional
        Token budget of the call; it stops with
        :class:`~embedtasks.exceptions.BudgetExceededError` before sending a
        request that would exceed it.
    pacing_dir : Path, optional
        Folder of the shared pacing state (the cache directory), so that
        processes using the same endpoint and model pace together.
    """

    model: str = "text-embedding-3-small"
    base_url: str = DEFAULT_BASE_URL
    api_key: str | Secret | None = field(default=None, repr=False)
    dimensions: int | None = None
    api_version: str | None = None
    headers: Mapping[str, Any] | None = field(default=None, repr=False)
    batch_size: int = 2048
    max_tokens_per_request: int = 300_000
    max_tokens_per_input: int = 8192
    long_text: str = "error"
    max_concurrency: int = 8
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_retries: int = 8
    timeout: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 30.0
    deadline: float | None = None
    max_tokens: int | None = None
    pacing_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.long_text not in LONG_TEXT_POLICIES:
            raise ValueError(
                f"long_text must be one of {LONG_TEXT_POLICIES}, got "
                f"{self.long_text!r}."
            )
        url = (self.base_url or DEFAULT_BASE_URL).rstrip("/")
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must start with http:// or https://, got "
                f"{mask_url(url)!r}. Write it in full, e.g. "
                "'http://localhost:8000/v1'."
            )
        check_url(url)
        object.__setattr__(self, "base_url", url)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names (shared with the estimator's parameters)."""
        return tuple(f.name for f in fields(cls))

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("ClientSettings is not picklable (it may hold an API key).")


@dataclass
class UsageStats:
    """Counters of one :meth:`EmbeddingClient.embed` call."""

    texts: int = 0
    requests: int = 0
    tokens: int = 0
    retries: int = 0
    rate_limited: int = 0
    split_batches: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict."""
        return asdict(self)
