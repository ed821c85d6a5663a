"""Run a BERT sentence-embedding model from its own files, without torch.

A model directory in the sentence-transformers layout (``config.json``,
``model.safetensors``, ``tokenizer.json``, optionally ``modules.json``,
``sentence_bert_config.json`` and ``1_Pooling/config.json``) is read here and its
weights are laid into an ONNX graph built in memory with the ``onnx`` package (no
export, no torch), which ONNX Runtime then runs on the CPU with the machine's
threads. The graph uses ONNX Runtime's fused BERT kernels (``Attention``,
``SkipLayerNormalization``, ``BiasGelu``: erf GELU, as BERT uses), and returns the
last hidden state; pooling (mean, CLS, max or mean-sqrt-len, as the directory's
pooling config says) is done here in numpy.

Supported: ``model_type`` ``"bert"`` with absolute position embeddings (MiniLM,
BGE, E5, GTE and other BERT-based sentence-transformers models). Other families
(MPNet, RoBERTa, DistilBERT, ...) raise :class:`UnsupportedModelError` naming the
``sentence-transformers`` backend, which runs them with torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks._kernel._onnx_graph import Graph, model_bytes
from embedtasks.embedders._onnx._int8 import Int8Products
from embedtasks.exceptions import EmbedTasksError

__all__ = [
    "BertModel",
    "ModelSpec",
    "UnsupportedModelError",
    "read_spec",
]

_POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}
_ST_TYPES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}


class UnsupportedModelError(EmbedTasksError, ValueError):
    """A model directory is missing a file, or holds a model this runtime cannot run."""


@dataclass(frozen=True)
class ModelSpec:
    """What a sentence-transformers BERT directory says about itself.

    Attributes
    ----------
    path : Path
        The directory.
    config : dict
        ``config.json``.
    pooling : str
        ``"mean"``, ``"cls"``, ``"max"`` or ``"mean_sqrt_len"``.
    normalize : bool
        Whether ``modules.json`` ends in a Normalize module (the embedder
        normalises rows in any case: its contract is unit rows).
    max_seq_length : int
        Tokens per window, special tokens included.
    """

    path: Path
    config: dict[str, Any] = field(repr=False)
    pooling: str
    normalize: bool
    max_seq_length: int


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(
            f"Could not read {path}: {type(exc).__name__}: {exc}. The model "
            "directory looks damaged; copy it again from its source."
        ) from exc


def read_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """Read and check a model directory; raise naming the missing or odd file.

    Raises
    ------
    UnsupportedModelError
        Not a directory, no ``config.json``/``tokenizer.json``/
        ``model.safetensors``, a ``model_type`` other than ``"bert"``, or
        sentence-transformers modules this runtime does not implement (Dense, ...).
    """
    where = Path(path)
    fix = (
        "Pass the directory of a sentence-transformers BERT model (config.json, "
        "model.safetensors, tokenizer.json), or use "
        "LocalEmbedder(backend='sentence-transformers') for other models."
    )
    if not where.is_dir():
        what = "is a file, not a directory" if where.exists() else "does not exist"
        raise UnsupportedModelError(f"Model directory {str(where)!r} {what}. {fix}")
    if not (where / "config.json").is_file():
        raise UnsupportedModelError(
            f"Model directory {str(where)!r} has no config.json, so it is not a "
            f"Hugging Face model directory. {fix}"
        )
    config = _read_json(where / "config.json")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "bert":
        raise UnsupportedModelError(
            f"Model directory {str(where)!r} holds a {model_type!r} model; the "
            "default (torch-free) backend runs BERT models (model_type 'bert') "
            "only. Use LocalEmbedder(backend='sentence-transformers') for it."
        )
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModelError(
            f"Model {str(where)!r} uses {config['position_embedding_type']!r} "
            "position embeddings; the default backend supports 'absolute' only. Use "
            "LocalEmbedder(backend='sentence-transformers')."
        )
    if config.get("hidden_act", "gelu") != "gelu":
        raise UnsupportedModelError(
            f"Model {str(where)!r} uses the activation {config['hidden_act']!r}; "
            "the default backend implements BERT's 'gelu' only. Use "
            "LocalEmbedder(backend='sentence-transformers')."
        )
    for name in ("tokenizer.json", "model.safetensors"):
        if not (where / name).is_file():
            hint = (
                "Save a fast tokenizer into it (transformers: "
                "AutoTokenizer.from_pretrained(path).save_pretrained(path))."
                if name == "tokenizer.json"
                else "Convert the weights to safetensors (the default backend "
                "cannot read pytorch_model.bin without torch)."
            )
            raise UnsupportedModelError(
                f"Model directory {str(where)!r} has no {name}. {hint}"
            )
    pooling, normalize = _read_modules(where)
    limit = int(config.get("max_position_embeddings", 512))
    st_config = where / "sentence_bert_config.json"
    if st_config.is_file():
        window = int(_read_json(st_config).get("max_seq_length") or limit)
    else:  # what sentence-transformers falls back to: the tokenizer's limit
        tok_config = where / "tokenizer_config.json"
        extra = _read_json(tok_config) if tok_config.is_file() else {}
        window = int(extra.get("model_max_length", limit))
    return ModelSpec(where, config, pooling, normalize, min(window, limit))


def _read_modules(where: Path) -> tuple[str, bool]:
    """Pooling mode and normalisation from ``modules.json`` (mean, no: without it)."""
    modules_file = where / "modules.json"
    if not modules_file.is_file():
        return "mean", False  # sentence-transformers' default for a bare HF model
    modules = _read_json(modules_file)
    pooling, normalize = "mean", False
    for module in modules:
        kind = module.get("type", "")
        if kind not in _ST_TYPES:
            raise UnsupportedModelError(
                f"Model {str(where)!r} has a {kind!r} module in modules.json; the "
                "default backend runs Transformer, Pooling and Normalize modules "
                "only. Use LocalEmbedder(backend='sentence-transformers')."
            )
        if kind.endswith(".Normalize"):
            normalize = True
        if kind.endswith(".Pooling"):
            pooling = _read_pooling(where / module.get("path", "") / "config.json")
    return pooling, normalize


def _read_pooling(config_file: Path) -> str:
    if not config_file.is_file():
        return "mean"
    settings = _read_json(config_file)
    chosen = [mode for key, mode in _POOLING_MODES.items() if settings.get(key)]
    other = [
        key
        for key, value in settings.items()
        if key.startswith("pooling_mode") and value and key not in _POOLING_MODES
    ]
    if len(chosen) != 1 or other:
        raise UnsupportedModelError(
            f"{config_file} asks for pooling {sorted(chosen + other)}; the default "
            "backend supports exactly one of mean, cls, max, mean_sqrt_len. Use "
            "LocalEmbedder(backend='sentence-transformers')."
        )
    return chosen[0]


def _build_graph(
    spec: ModelSpec,
    precision: str = "float32",
) -> bytes:
    """The serialised ONNX model: (input_ids, attention_mask) -> last hidden state.

    ``precision="int8"`` writes the encoder's weight products as int8 products
    (:mod:`embedtasks.embedders._onnx._int8`).
    """
    from safetensors.numpy import load_file

    try:
        weights = load_file(spec.path / "model.safetensors")
    except Exception as exc:  # safetensors raises its own error types
        raise UnsupportedModelError(
            f"Could not read {spec.path / 'model.safetensors'}: {exc}. The file "
            "looks damaged; copy the model again."
        ) from exc
    cfg = spec.config
    hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    prefix = "" if "embeddings.word_embeddings.weight" in weights else "bert."

    def w(name: str, transpose: bool = False) -> npt.NDArray[np.float32]:
        key = prefix + name
        if key not in weights:
            raise UnsupportedModelError(
                f"{spec.path / 'model.safetensors'} has no tensor {key!r}: not the "
                "weights of a BERT model. Use "
                "LocalEmbedder(backend='sentence-transformers')."
            )
        array = weights[key].astype(np.float32, copy=False)
        return array.T if transpose else array

    g = Graph()
    ms = "com.microsoft"
    e = "embeddings."
    x = g.node(
        "Gather", [g.const("word", w(e + "word_embeddings.weight")), "input_ids"]
    )
    one, two = np.array([1], np.int64), np.array([2], np.int64)
    length = g.node(
        "Slice", [g.node("Shape", ["input_ids"]), g.const("1", one), g.const("2", two)]
    )
    position = g.const("position", w(e + "position_embeddings.weight"))
    start = g.const("0", np.array([0], np.int64))
    x = g.node("Add", [x, g.node("Slice", [position, start, length])])
    x = g.node("Add", [x, g.const("type", w(e + "token_type_embeddings.weight")[0])])
    ln = [
        g.const("ln_g", w(e + "LayerNorm.weight")),
        g.const("ln_b", w(e + "LayerNorm.bias")),
    ]
    x = g.node("LayerNormalization", [x, *ln], axis=-1, epsilon=eps)
    mask = g.node("Cast", ["attention_mask"], to=6)  # INT32, as Attention wants

    int8 = Int8Products(g) if precision == "int8" else None

    def dense(h: str, o: str, bias: bool = True) -> str:
        """``h @ W (+ b)`` of the ``o`` dense layer, in int8 or float32."""
        weight = w(o + "weight", True)
        b = w(o + "bias") if bias else None
        if int8 is not None:
            h = int8.matmul(h, weight, o)
        else:
            h = g.node("MatMul", [h, g.const(o + "w", weight)])
        return h if b is None else g.node("Add", [h, g.const(o + "b", b)])

    def add_norm(h: str, residual: str, o: str) -> str:
        """LayerNorm(h + residual). (``Add`` + ``LayerNormalization`` run ~3x
        faster than ONNX Runtime's fused ``SkipLayerNormalization`` on the CPU.)"""
        norm = [g.const(o + n, w(o + "LayerNorm." + n)) for n in ("weight", "bias")]
        h = g.node("Add", [h, residual])
        return g.node("LayerNormalization", [h, *norm], axis=-1, epsilon=eps)

    for i in range(int(cfg["num_hidden_layers"])):
        p = f"encoder.layer.{i}."
        qkv = [f"{p}attention.self.{n}" for n in ("query", "key", "value")]
        b_qkv = g.const(p + "qkv_b", np.concatenate([w(n + ".bias") for n in qkv]))
        if int8 is None:
            w_qkv = np.concatenate([w(n + ".weight", True) for n in qkv], axis=1)
            inputs = [x, g.const(p + "qkv_w", w_qkv), b_qkv, mask]
            a = g.node("Attention", inputs, domain=ms, num_heads=heads)
        else:  # the same attention on int8 projections (their biases added in it)
            q, k, v = (dense(x, n + ".", bias=False) for n in qkv)
            inputs = [q, k, v, b_qkv, mask]
            a = g.node("MultiHeadAttention", inputs, domain=ms, num_heads=heads)
        o = p + "attention.output."
        x = add_norm(dense(a, o + "dense."), x, o)
        m = p + "intermediate.dense."
        h = g.node(
            "BiasGelu",
            [dense(x, m, bias=False), g.const(m + "b", w(m + "bias"))],
            domain=ms,
        )
        o = p + "output."
        x = add_norm(dense(h, o + "dense."), x, o)
    g.node("Identity", [x], output="hidden")
    return model_bytes(
        g,
        inputs=[("input_ids", 7, ["B", "T"]), ("attention_mask", 7, ["B", "T"])],
        outputs=[("hidden", 1, ["B", "T", hidden])],
        opsets={"": 17, ms: 1},
    )


def n_threads() -> int:
    """CPU threads this process may use (its affinity mask, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


class BertModel:
    """A BERT model directory run by ONNX Runtime: token ids -> pooled vectors.

    Parameters
    ----------
    spec : ModelSpec
        From :func:`read_spec`.
    threads : int, optional
        Intra-op threads; the process's CPUs by default.
    precision : {"int8", "float32"}, default="float32"
        How the encoder's weight products run (:func:`_build_graph`).
    """

    def __init__(
        self, spec: ModelSpec, threads: int | None = None, precision: str = "float32"
    ) -> None:
        import onnxruntime as ort

        self.spec = spec
        self.precision = precision
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or n_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no notes about initialisers
        # Worker threads sleep between operators instead of spinning: on a busy
        # machine spinning costs a third more CPU time for the same work.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Activations come from ONNX Runtime's arena, which reuses its blocks
        # from batch to batch: measured on 2,048-token batches, activations peak
        # 60 MB above the weights (float32 and int8); without the arena, blocks
        # freed to malloc fragment and the peak grows to 130 MB (float32) and
        # 290 MB (int8). No memory pattern: it allocates one more block per batch
        # shape (every batch width is a shape), 30 MB more at the peak.
        # :meth:`release` hands the arena back after a block of texts.
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = False
        self._session = ort.InferenceSession(
            _build_graph(spec, precision), options, providers=["CPUExecutionProvider"]
        )
        # The Python session keeps the serialised model (the weights, 90 MB for
        # all-MiniLM-L6-v2) to rebuild itself after a GPU provider fails; on the
        # CPU that never happens, and the runtime has its own copy.
        self._session.disable_fallback()
        if hasattr(self._session, "_model_bytes"):
            self._session._model_bytes = None
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry(
            "memory.enable_memory_arena_shrinkage", "cpu:0"
        )

    def __call__(
        self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """Pooled (not normalised) vectors of a padded batch, shape (B, hidden)."""
        (hidden,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        return pool_tokens(hidden, mask, self.spec.pooling)

    def release(self) -> None:
        """Hand the arena's free blocks back (a one-token run that shrinks it)."""
        one = np.ones((1, 1), dtype=np.int64)
        self._session.run(None, {"input_ids": one, "attention_mask": one}, self._shrink)


def pool_tokens(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64], mode: str
) -> npt.NDArray[np.float32]:
    """Token vectors (B, T, H) -> one vector per row, as sentence-transformers pools.

    Examples
    --------
    >>> h = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    >>> pool_tokens(h, np.array([[1, 1, 0]]), "mean")
    array([[2., 3., 4., 5.]], dtype=float32)
    >>> pool_tokens(h, np.array([[1, 1, 0]]), "max")
    array([[4., 5., 6., 7.]], dtype=float32)
    """
    if mode == "cls":
        return np.ascontiguousarray(hidden[:, 0])
    weights = mask.astype(np.float32)[:, :, None]
    if mode == "max":
        masked = np.where(weights > 0, hidden, np.float32(-1e9))
        return np.asarray(masked.max(axis=1), dtype=np.float32)
    total = np.einsum("bth,bt->bh", hidden, weights[:, :, 0])
    count = np.maximum(weights.sum(axis=1), np.float32(1e-9))
    if mode == "mean_sqrt_len":
        return np.asarray(total / np.sqrt(count), dtype=np.float32)
    return np.asarray(total / count, dtype=np.float32)
