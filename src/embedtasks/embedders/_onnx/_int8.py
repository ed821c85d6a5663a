"""int8 weight products for the BERT graph: a step per weight column and per token.

A float product ``y = x @ W`` becomes an integer one that CPUs with 8-bit
dot-product instructions (AVX-512 VNNI, AVX-VNNI, ARM dot product) run about
four times faster:

- each *column* of ``W`` (one output channel) gets its own step ``s_w[n] =
  max|W[:, n]| / 63`` and codes ``round(W / s_w)`` in [-63, 63], computed once
  when the graph is written (7 bits: exact on every x86 integer kernel, see
  :data:`_WEIGHT_TOP`);
- each *row* of ``x`` (one token) gets its own step ``s_x = max|x_row| / 127``
  when the graph runs, and uint8 codes ``round(x / s_x) + 128``
  (``QuantizeLinear`` along the rows);
- ONNX Runtime's ``MatMulIntegerToFloat`` multiplies the codes exactly in int32
  and returns ``s_w * ((codes_x - 128) @ codes_w)`` in float32, times ``s_x``.

A step per token (ONNX Runtime's own dynamic quantisation takes one per batch)
keeps a token with large activations from coarsening every other token's codes;
a step per output channel does the same for the weights.

What was measured (all-MiniLM-L6-v2; cosine of each text's vector with the
float32 one; 200 Brown paragraphs / 400 Banking77 queries): every weight
product in int8 gives mean 0.996 / min 0.993 on paragraphs and 0.996 / 0.992 on
queries (8-bit weights: 0.997 / 0.995, but they may saturate on CPUs without
VNNI; 7-bit activations instead of weights: 0.995 / 0.987); one step per batch
instead of per token costs 0.004 of mean cosine more; one kind of product alone
in int8 costs at most 0.0015 (the query, key and value projections the most,
the attention output projection nothing measurable); keeping the first and last
layers in float32 gains 0.0006. So all four weight products of every layer run
in int8, and only the attention itself (scores and the weighted sum of values,
products of two activations) stays in float32.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from embedtasks._kernel._onnx_graph import Graph

__all__ = ["Int8Products", "quantize_columns"]

_UINT8 = 2  # TensorProto.DataType
_ZERO_POINT = 128
#: Largest weight code: 7 bits, so that no pair of products overflows 16 bits
#: (255 * 63 * 2 < 2**15) on x86 CPUs without VNNI, whose kernel sums pairs of
#: uint8 x int8 products in int16 (``vpmaddubsw``) and would saturate at 8 bits.
_WEIGHT_TOP = 63


def quantize_columns(
    W: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Symmetric 7-bit codes of ``W`` (K, N) with one step per column.

    Examples
    --------
    >>> W = np.array([[1.0, -3.0], [-3.0, 2.0]], dtype=np.float32)
    >>> codes, step = quantize_columns(W)
    >>> codes
    array([[ 21, -63],
           [-63,  42]], dtype=int8)
    >>> bool(np.abs(codes * step - W).max() <= step.max() / 2)
    True
    """
    peak = np.abs(W).max(axis=0)
    step = np.where(peak > 0, peak / _WEIGHT_TOP, 1.0).astype(np.float32)
    codes = np.clip(np.rint(W / step), -_WEIGHT_TOP, _WEIGHT_TOP).astype(np.int8)
    return codes, step


class Int8Products:
    """Write int8 weight products into ``graph``; each input is quantised once.

    Parameters
    ----------
    graph : Graph
        The graph being written; its input tensors have a last axis of features
        (tokens on the axes before it).

    Examples
    --------
    >>> import onnxruntime as ort
    >>> from embedtasks._kernel._onnx_graph import model_bytes
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((64, 3)).astype(np.float32)
    >>> g = Graph()
    >>> y = g.node("Identity", [Int8Products(g).matmul("x", W, "w")], output="y")
    >>> model = model_bytes(
    ...     g,
    ...     inputs=[("x", 1, ["n", 64])],
    ...     outputs=[("y", 1, ["n", 3])],
    ...     opsets={"": 17, "com.microsoft": 1},
    ... )
    >>> session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    >>> x = rng.standard_normal((5, 64)).astype(np.float32)
    >>> (y,) = session.run(None, {"x": x})
    >>> y.shape, y.dtype
    ((5, 3), dtype('float32'))
    >>> bool(np.abs(y - x @ W).max() < 0.02 * np.abs(x @ W).max())
    True
    """

    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self._rows: dict[str, tuple[str, str]] = {}
        const = graph.const
        self._top = const("i8_top", np.array(127.0, np.float32))
        self._one = const("i8_one", np.array(1.0, np.float32))
        self._tiny = const("i8_tiny", np.array(1e-30, np.float32))
        self._zero = const("i8_zero_point", np.array(_ZERO_POINT, np.uint8))
        self._nothing = const("i8_nothing", np.array(0.0, np.float32))
        self._zero_f = const("i8_zero_point_f", np.array(_ZERO_POINT, np.float32))
        self._flat = const("i8_flat", np.array([-1], np.int64))

    def rows(self, x: str, width: int) -> tuple[str, str]:
        """uint8 codes of ``x`` (..., width) and its per-row steps (..., 1)."""
        if x not in self._rows:
            g = self.g
            high = g.node("ReduceMax", [x], axes=[-1], keepdims=1)
            low = g.node("ReduceMin", [x], axes=[-1], keepdims=1)
            peak = g.node("Max", [high, g.node("Neg", [low]), self._tiny])
            step = g.node("Div", [peak, self._top])  # (..., 1)
            # QuantizeLinear takes one step per row of a matrix: flatten the
            # tokens, with a zero point of 128 per row.
            steps = g.node("Reshape", [step, self._flat])
            zero = g.node("Mul", [steps, self._nothing])
            zero = g.node("Cast", [g.node("Add", [zero, self._zero_f])], to=_UINT8)
            shape = g.const(f"i8_rows_{len(self._rows)}", np.array([-1, width]))
            matrix = g.node("Reshape", [x, shape])
            codes = g.node("QuantizeLinear", [matrix, steps, zero], axis=0)
            codes = g.node("Reshape", [codes, g.node("Shape", [x])])
            self._rows[x] = (codes, step)
        return self._rows[x]

    def matmul(self, x: str, W: npt.NDArray[np.float32], name: str) -> str:
        """``x @ W`` in float32 from an exact integer product of codes."""
        codes, step = self.rows(x, W.shape[0])
        w_codes, w_step = quantize_columns(W)
        g = self.g
        inputs = [
            codes,
            g.const(name + "_codes", w_codes),
            self._one,  # the rows' steps are applied below: the operator's
            g.const(name + "_steps", w_step),  # ``a_scale`` is one number
            self._zero,
        ]
        product = g.node("MatMulIntegerToFloat", inputs, domain="com.microsoft")
        return g.node("Mul", [product, step])
