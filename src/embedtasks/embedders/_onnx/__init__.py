"""The local model on ONNX Runtime: the BERT graph from the model's own weights."""

from __future__ import annotations
