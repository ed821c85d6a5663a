"""An integer screen for large top-k searches: exact int8 products, then a bound.

Large batches spend their time in the float32 product of queries and corpus. The
screen replaces it, for *selection only*, by an integer product that CPUs with
8-bit dot-product instructions (AVX-512 VNNI, AVX-VNNI, ARM dot product) run
several times faster: the corpus is quantised once per dimension to int8 codes,
each query (scaled by the same per-dimension steps) to uint8 with zero point 128,
and ONNX Runtime's ``MatMulInteger`` returns their product as exact int32.

So for query ``q`` and row ``c`` (``c = zero + step * code + residual``)::

    q . c = q . zero + s_q * I + err,   |err| <= |q| * E + |delta_q| * N

where ``I`` is the exact integer product, ``s_q`` the query's step, ``delta_q``
its rounding residual, ``E`` the largest row residual norm and ``N`` the largest
row code norm. Ranking by ``I`` within a query is ranking by the estimate, and
``margin / s_q`` integer units bound its error: the kernel keeps every row that
could be among the top k under that bound and rescores the survivors canonically.
The answer is therefore the same bits as without the screen.

Integer products are exact, so the screen cannot round differently on another
CPU; the only machine-dependent risk is a kernel that saturates 16-bit
intermediate sums (x86 without VNNI, ``vpmaddubsw``). :func:`screen_available`
probes the extreme products once per process and the screen is not used where
they come out wrong.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from embedtasks._kernel._corpus import Dense, as_corpus, quantize

#: Corpus rows below which the float path is used: with few tiles per query the
#: screen's fixed costs (seeding, refining its bound) outweigh its faster product
#: (Banking77, 10k rows: no gain; 100k rows: 2x less CPU).
MIN_SCREEN_ROWS = 32768

#: Queries from which a search builds a screen for itself (building one costs
#: about what it saves on a thousand queries); callers that search the same
#: corpus again keep one (``DotProductNeighbors``) and use it from
#: :data:`MIN_SCREEN_QUERIES` queries.
MIN_SCREEN_BUILD_QUERIES = 2048

#: Queries from which a kept screen is used (below: matrix-vector products).
MIN_SCREEN_QUERIES = 64

_ZERO_POINT = 128
_lock = threading.Lock()
_state: dict[str, Any] = {}


def _session() -> Any:
    """A one-node ``MatMulInteger`` session (uint8 x int8 -> int32), or None."""
    with _lock:
        if "session" in _state:
            return _state["session"]
        _state["session"] = None
        try:
            _state["session"] = _build_session()
        except Exception:  # no onnxruntime, or no integer kernel: use the float path
            _state["session"] = None
        return _state["session"]


def _build_session() -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the kernel's threads split the corpus
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        _matmul_integer_model(), options, providers=["CPUExecutionProvider"]
    )
    if not _exact_on_extremes(session) or not _faster_than_blas(session):
        return None
    return session


def _matmul_integer_model() -> bytes:
    """``Y = MatMulInteger(A, B, Z)``: uint8 (queries) x int8 (codes) -> int32."""
    from embedtasks._kernel._onnx_graph import Graph, model_bytes

    graph = Graph()
    graph.node("MatMulInteger", ["A", "B", "Z"], output="Y")
    uint8, int8, int32 = 2, 3, 6  # TensorProto.DataType
    return model_bytes(
        graph,
        inputs=[("A", uint8, ["n", "d"]), ("B", int8, ["d", "m"]), ("Z", uint8, [])],
        outputs=[("Y", int32, ["n", "m"])],
        opsets={"": 13},
    )


def _exact_on_extremes(session: Any) -> bool:
    """Whether the integer kernel is exact where a saturating one would not be."""
    d = 384
    A = np.array([[255] * d, [0] * d, [255, 0] * (d // 2)], dtype=np.uint8)
    B = np.empty((d, 3), dtype=np.int8)
    B[:, 0], B[:, 1], B[:, 2] = 127, -128, np.tile([-128, 127], d // 2)
    got = session.run(None, {"A": A, "B": B, "Z": np.array(_ZERO_POINT, np.uint8)})[0]
    want = (A.astype(np.int64) - _ZERO_POINT) @ B.astype(np.int64)
    return bool(np.array_equal(got, want))


def _faster_than_blas(session: Any, *, n: int = 256, m: int = 2048) -> bool:
    """Whether the integer product beats float32 BLAS here by a clear margin.

    Without 8-bit dot-product instructions the integer kernel may be exact but
    slow; the screen then only adds work. Best of three, once per process.
    """
    import time

    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    A = rng.integers(0, 256, (n, 384)).astype(np.uint8)
    B = rng.integers(-127, 128, (384, m)).astype(np.int8)
    X, Y = (
        rng.standard_normal((n, 384), np.float32),
        rng.standard_normal((m, 384), np.float32),
    )
    out = np.empty((n, m), dtype=np.float32)
    feeds = {"A": A, "B": B, "Z": np.array(_ZERO_POINT, np.uint8)}

    def best(run: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return min(times)

    t_int = best(lambda: session.run(None, feeds))
    with threadpool_limits(limits=1, user_api="blas"):
        t_float = best(lambda: np.matmul(X, Y.T, out=out))
    return t_int * 1.5 < t_float


def screen_available() -> bool:
    """Whether this machine has an exact integer product kernel (probed once)."""
    return _session() is not None


class Encoded(NamedTuple):
    """Queries for the screen: codes, and per query the terms of its estimate."""

    codes: npt.NDArray[np.uint8]
    units: npt.NDArray[np.float64]  # error bound, in integer units
    offset: npt.NDArray[np.float64]  # q . zero
    step: npt.NDArray[np.float64]  # s_q


class Screen:
    """int8 codes of a corpus and the constants of the screen's error bound."""

    def __init__(
        self,
        codes: npt.NDArray[np.int8],
        step: npt.NDArray[np.float64],
        zero: npt.NDArray[np.float64],
        residual_norm: float,
        code_norm: float,
    ) -> None:
        self.codes = codes
        self.step = step  # float64, per dimension
        self.zero = zero  # float64, per dimension
        self.residual_norm = residual_norm
        self.code_norm = code_norm
        self.n, self.d = codes.shape

    def rows_slice(self, c0: int, c1: int) -> Screen:
        """Rows [c0, c1) (a view; the bound's constants stay valid for a subset)."""
        return Screen(
            self.codes[c0:c1], self.step, self.zero, self.residual_norm, self.code_norm
        )

    def encode(self, Q: npt.NDArray[np.float32]) -> Encoded:
        """uint8 codes of queries, and the terms of their estimates' bound.

        The estimate of ``q . c`` is ``offset + step * I`` (``I``: the integer
        product), so within a query rows rank by ``I``; ``units`` bounds the
        estimate's error in units of ``step``, rounded up.
        """
        Q64 = Q.astype(np.float64)
        W = Q64 * self.step  # exact: 24-bit by 24-bit products
        peak = np.abs(W).max(axis=1)
        s_q = np.where(peak > 0, peak / 127.0, 1.0)
        U = np.rint(W / s_q[:, None])
        delta = W - U * s_q[:, None]
        q_norm = np.sqrt(np.einsum("ij,ij->i", Q64, Q64))
        d_norm = np.sqrt(np.einsum("ij,ij->i", delta, delta))
        w_norm = np.sqrt(np.einsum("ij,ij->i", W, W))
        err = q_norm * self.residual_norm + d_norm * self.code_norm
        # The float64 roundings above (norms, U * s_q) are far below this slack;
        # one more unit covers rounding the margin itself.
        err = err * (1 + 1e-6) + 1e-15 * w_norm * self.code_norm
        # float64 rounding of the offset: far below one more unit.
        units = np.ceil(err / s_q) + 2
        offset = Q64 @ self.zero
        return Encoded((U + _ZERO_POINT).astype(np.uint8), units, offset, s_q)

    def product(
        self, U: npt.NDArray[np.uint8], c0: int, c1: int, out: npt.NDArray[np.int32]
    ) -> None:
        """``out = (U - 128) @ codes[c0:c1].T``, exact int32."""
        session = _session()
        B = np.ascontiguousarray(self.codes[c0:c1].T)
        binding = session.io_binding()
        binding.bind_cpu_input("A", U)
        binding.bind_cpu_input("B", B)
        binding.bind_cpu_input("Z", np.array(_ZERO_POINT, dtype=np.uint8))
        binding.bind_output(
            "Y", "cpu", 0, np.int32, list(out.shape), out.ctypes.data
        )  # fmt: skip
        session.run_with_iobinding(binding)


def build_screen(corpus: Any) -> Screen | None:
    """The integer screen of an in-memory corpus, or None where it cannot help.

    None when the machine has no exact integer kernel, or for a memory-mapped
    corpus (the codes would hold a quarter of the file in memory).

    Examples
    --------
    >>> import numpy as np
    >>> from embedtasks._kernel import top_k
    >>> rng = np.random.default_rng(0)
    >>> C = rng.standard_normal((500, 16)).astype(np.float32)
    >>> Q = rng.standard_normal((100, 16)).astype(np.float32)
    >>> screened = top_k(Q, C, 5, screen=build_screen(C))
    >>> plain = top_k(Q, C, 5, screen=False)
    >>> bool((screened.indices == plain.indices).all()
    ...      and (screened.scores == plain.scores).all())
    True
    """
    src = as_corpus(corpus)
    if not isinstance(src, Dense) or src.mapped or src.n == 0:
        return None
    if not screen_available():
        return None
    codes, step32, zero32 = quantize(src)
    # Residual norms in float32: each element errs by at most a few roundings of
    # the largest magnitude in the corpus (``peak``), added as a slack below.
    peak = float(np.abs(zero32).max() + 127.5 * step32.max())
    residual_norm = code_norm = 0.0
    chunk = 8192
    for c0 in range(0, src.n, chunk):
        c1 = min(c0 + chunk, src.n)
        K = codes[c0:c1].astype(np.float32)
        R = src.C[c0:c1] - (K * step32 + zero32)
        residual_norm = max(residual_norm, float(np.einsum("ij,ij->i", R, R).max()))
        code_norm = max(code_norm, float(np.einsum("ij,ij->i", K, K).max()))
    u = float(np.finfo(np.float32).eps)
    slack = np.sqrt(src.d) * 8 * u * peak
    residual_norm = np.sqrt(residual_norm * (1 + src.d * u * 2)) + slack
    # int8 squares summed below 2**24 are exact in float32.
    return Screen(
        codes,
        step32.astype(np.float64),
        zero32.astype(np.float64),
        float(residual_norm * (1 + 1e-6)),
        float(np.sqrt(code_norm) * (1 + 1e-9)),
    )
