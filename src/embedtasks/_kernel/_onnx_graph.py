"""Write an ONNX model (protobuf bytes) from nodes and numpy initialisers.

The few messages a BERT graph needs (``ModelProto``, ``GraphProto``,
``NodeProto``, ``AttributeProto``, ``TensorProto``, ``ValueInfoProto``), written
with the protobuf wire format directly: the ``onnx`` package is not needed at run
time (importing it costs more than half a second, and ~40 MB of install), and
weights go into the model as raw little-endian bytes without copies through
Python objects. ``tests/test_local.py`` checks the output with ``onnx.checker``
where ``onnx`` is installed.

Field numbers are those of ``onnx/onnx.proto`` (IR version 8).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["Graph", "model_bytes"]

# TensorProto.DataType
_DTYPES = {
    np.dtype(np.float32): 1,
    np.dtype(np.uint8): 2,
    np.dtype(np.int8): 3,
    np.dtype(np.int32): 6,
    np.dtype(np.int64): 7,
}


Chunks = list["bytes | memoryview"]


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _message(number: int, parts: Chunks) -> Chunks:
    """A length-delimited field around ``parts`` (chunks, joined once at the end)."""
    size = sum(len(p) for p in parts)
    return [_varint(number << 3 | 2) + _varint(size), *parts]


def _bytes(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _float(number: int, value: float) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<f", value)


def _attribute(name: str, value: int | float | Sequence[int]) -> bytes:
    # AttributeProto: name=1, f=2, i=3, ints=8, type=20 (FLOAT=1, INT=2, INTS=7)
    if isinstance(value, Sequence):
        return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, 7)
    if isinstance(value, int):
        return _bytes(1, name) + _int(3, value) + _int(20, 2)
    return _bytes(1, name) + _float(2, value) + _int(20, 1)


def _tensor(name: str, array: npt.NDArray[np.generic]) -> Chunks:
    # TensorProto: dims=1, data_type=2, name=8, raw_data=9 (the array's own buffer)
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    head = b"".join(_int(1, d) for d in data.shape)
    head += _int(2, _DTYPES[data.dtype]) + _bytes(8, name)
    raw = data.reshape(-1).view(np.uint8).data
    return [head, *_message(9, [raw])]


def _value_info(name: str, elem_type: int, shape: Sequence[int | str]) -> bytes:
    # ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2}}}
    dims = b"".join(
        _bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in shape
    )
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


@dataclass
class Graph:
    """Nodes and initialisers of one graph, added in order.

    Examples
    --------
    >>> g = Graph()
    >>> w = g.const("w", np.eye(2, dtype=np.float32))
    >>> y = g.node("MatMul", ["x", w])
    >>> len(g.nodes), y
    (1, 'MatMul_0')
    """

    nodes: list[bytes] = field(default_factory=list)
    initializers: list[Chunks] = field(default_factory=list)

    def const(self, name: str, array: npt.ArrayLike) -> str:
        """Add an initialiser; return its name."""
        self.initializers.append(_tensor(name, np.asarray(array)))
        return name

    def node(
        self,
        op: str,
        inputs: Sequence[str],
        *,
        domain: str = "",
        output: str | None = None,
        more_outputs: Sequence[str] = (),
        **attributes: int | float | Sequence[int],
    ) -> str:
        """Add a node; return the name of its first output (``more_outputs``
        names the others, for operators with several)."""
        out = output or f"{op}_{len(self.nodes)}"
        # NodeProto: input=1, output=2, op_type=4, attribute=5, domain=7
        body = b"".join(_bytes(1, i) for i in inputs)
        body += b"".join(_bytes(2, o) for o in (out, *more_outputs))
        body += _bytes(4, op)
        body += b"".join(_bytes(5, _attribute(k, v)) for k, v in attributes.items())
        if domain:
            body += _bytes(7, domain)
        self.nodes.append(body)
        return out


def model_bytes(
    graph: Graph,
    *,
    inputs: Sequence[tuple[str, int, Sequence[int | str]]],
    outputs: Sequence[tuple[str, int, Sequence[int | str]]],
    opsets: dict[str, int],
    ir_version: int = 8,
) -> bytes:
    """Serialise a ModelProto: ``inputs``/``outputs`` are (name, elem type, shape)."""
    # GraphProto: node=1, name=2, initializer=5, input=11, output=12
    body: Chunks = [_bytes(1, n) for n in graph.nodes]
    body.append(_bytes(2, "graph"))
    for tensor in graph.initializers:
        body += _message(5, tensor)
    body += [_bytes(11, _value_info(*v)) for v in inputs]
    body += [_bytes(12, _value_info(*v)) for v in outputs]
    # ModelProto: ir_version=1, producer_name=2, graph=7, opset_import=8
    model: Chunks = [_int(1, ir_version), _bytes(2, "embedtasks")]
    model += _message(7, body)
    for domain, version in opsets.items():
        model.append(_bytes(8, _bytes(1, domain) + _int(2, version)))
    return b"".join(model)
