"""The HTTP client for OpenAI-compatible endpoints: requests within every limit,
pacing learned from the server, retries within a deadline. Knows nothing of
scikit-learn."""

from __future__ import annotations
