"""Tensor messages: an n-dimensional array's FlatBuffer header at the start of the slot, its
elements after it (64-byte aligned) in the same slot (schemas/tensor.fbs)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import flatbuffers
import numpy as np
import numpy.typing as npt

from ._payload import DATA_ALIGN, ArraySlot, check_schema, stamp
from ._table import Field, TableSpec, Template, round_up
from .compat import tensor_schema
from .info import _NP_OF_DTYPE, MAX_DIMS, _dtype_code

if TYPE_CHECKING:
    from ..channel import Channel, Writer

TENSOR_IDENT = b"SHTN"

TENSOR = TableSpec("Tensor message", TENSOR_IDENT, [
    Field(0, "dtype", "scalar", "B"),
    Field(1, "shape", "vector", "Q", (), MAX_DIMS),
    Field(2, "strides", "vector", "q", (), MAX_DIMS),
    Field(3, "data_offset", "scalar", "Q"),
    Field(4, "data_size", "scalar", "Q"),
    Field(5, "seq", "scalar", "Q"),
    Field(6, "timestamp_ns", "scalar", "Q"),
], volatile=("seq", "timestamp_ns"))
_NP = {k: np.dtype(v) for k, v in _NP_OF_DTYPE.items()}


@dataclass(frozen=True)
class TensorView:
    """A decoded Tensor message; ``array`` is a view of the slot."""

    seq: int
    timestamp_ns: int
    array: npt.NDArray[Any] = field(repr=False)


class TensorSlot(ArraySlot):
    """A reserved slot holding a Tensor header; fill ``array`` in place, then commit."""

    __slots__ = ()
    _what = "tensor"

    @property
    def array(self) -> npt.NDArray[Any]:
        """The writable array of the tensor's elements (until commit or abort)."""
        return self._payload()

    def __enter__(self) -> TensorSlot:
        return self


def _build_tensor(dtype: int, shape: tuple[int, ...], strides: tuple[int, ...], data_offset: int, data_size: int,
                  seq: int, ts: int) -> bytes:
    from ..fb import Tensor as T

    b = flatbuffers.Builder(256)
    b.ForceDefaults(True)
    T.TensorStartShapeVector(b, len(shape))
    for d in reversed(shape):
        b.PrependUint64(d)
    shp = b.EndVector()
    T.TensorStartStridesVector(b, len(strides))
    for s in reversed(strides):
        b.PrependInt64(s)
    strd = b.EndVector()
    T.TensorStart(b)
    T.TensorAddDataOffset(b, data_offset)
    T.TensorAddDataSize(b, data_size)
    T.TensorAddSeq(b, seq)
    T.TensorAddTimestampNs(b, ts)
    T.TensorAddShape(b, shp)
    T.TensorAddStrides(b, strd)
    T.TensorAddDtype(b, dtype)
    b.Finish(T.TensorEnd(b), TENSOR_IDENT)
    return bytes(b.Output())


class _TensorTemplate:
    __slots__ = ("dtype", "shape", "size", "template")

    def __init__(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> None:
        if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
            raise ValueError(f"shape must have at most {MAX_DIMS} non-negative dimensions, got {shape}")
        code, dt = _dtype_code(dtype)
        strides = []
        acc = dt.itemsize
        for d in reversed(shape):
            strides.append(acc)
            acc *= max(d, 1)
        strides.reverse()
        data_size = dt.itemsize * math.prod(shape)
        probe = _build_tensor(int(code), shape, tuple(strides), 1, 1, 0, 0)
        data_offset = round_up(len(probe), DATA_ALIGN)
        head = _build_tensor(int(code), shape, tuple(strides), data_offset, data_size, 0, 0)
        self.template = Template(TENSOR, head, data_offset, ("seq", "timestamp_ns"))
        self.shape, self.dtype = shape, dt
        self.size = data_offset + data_size


_TEMPLATES: dict[tuple[Any, ...], _TensorTemplate] = {}


def reserve_tensor(writer: Writer, shape: int | Iterable[int], dtype: npt.DTypeLike, *, seq: int | None = None,
                   timestamp_ns: int | None = None, timeout: float | None = None,
                   channel: Channel | None = None) -> TensorSlot:
    """Reserve a slot for a C-contiguous tensor; fill ``.array`` in place, then commit. The header is
    built once per shape and dtype; per message only seq and timestamp are written."""
    if channel is not None:
        check_schema(channel, tensor_schema())
    shp = (int(shape),) if isinstance(shape, int) else tuple(int(d) for d in shape)
    key: tuple[Any, ...] | None = (shp, dtype)
    try:
        t = _TEMPLATES.get(key)  # type: ignore[arg-type]
    except TypeError:  # an unhashable dtype-like
        t, key = None, None
    if t is None:
        t = _TensorTemplate(shp, dtype)
        if key is not None:
            if len(_TEMPLATES) >= 256:
                _TEMPLATES.clear()
            _TEMPLATES[key] = t
    s, ts = stamp(writer, seq, timestamp_ns)
    slot = writer.reserve(t.size, timeout)
    try:
        view = slot.buffer
        t.template.write(view, (s, ts))
        arr: npt.NDArray[Any] = np.ndarray(t.shape, t.dtype, buffer=view, offset=len(t.template.data))
        del view
    except BaseException:
        slot.abort()
        raise
    return TensorSlot(slot, arr)


def send_tensor(writer: Writer, array: npt.ArrayLike, *, seq: int | None = None, timestamp_ns: int | None = None,
                timeout: float | None = None, channel: Channel | None = None) -> None:
    """Write ``array`` (any shape, any strides, a supported dtype) as a Tensor message: one copy,
    straight from the array into the slot."""
    a = np.asarray(array)
    with reserve_tensor(writer, a.shape, a.dtype, seq=seq, timestamp_ns=timestamp_ns, timeout=timeout,
                        channel=channel) as ts:
        np.copyto(ts.array, a, casting="equiv")


def decode_tensor(view: memoryview) -> TensorView:
    """Decode a Tensor message in place (the header is copied out once and checked there;
    :class:`~shmchan.ShmchanDecodeError` if it is malformed)."""
    n = len(view)
    (code, shape, strides, data_offset, data_size, seq, ts), _ = TENSOR.read(view, n)
    dt = _NP.get(code)
    if dt is None:
        TENSOR.fail(f"unknown dtype {code}")
    if len(strides) != len(shape):
        TENSOR.fail(f"{len(shape)} dimensions but {len(strides)} strides")
    if data_offset > n or data_size > n - data_offset:
        TENSOR.fail(f"tensor data [{data_offset}, +{data_size}) outside the message of {n} bytes")
    count = math.prod(shape)
    if count > data_size // dt.itemsize:
        # every element needs its own bytes: a stride-0 shape such as (2**40,) over a few bytes would
        # be a terabyte-sized array (a copy of it fills memory); a tensor is never bigger than its data
        TENSOR.fail(f"shape {shape} of {dt} needs {count} elements, more than the {data_size} data bytes hold")
    if count != 0:
        lo = sum((d - 1) * s for d, s in zip(shape, strides, strict=True) if s < 0)
        hi = sum((d - 1) * s for d, s in zip(shape, strides, strict=True) if s > 0) + dt.itemsize
        if lo < 0 or hi > data_size:
            TENSOR.fail(f"shape {shape} with strides {strides} reaches [{lo}, {hi}) outside [0, {data_size})")
    try:
        arr: npt.NDArray[Any] = np.ndarray(shape, dt, buffer=view, offset=data_offset, strides=strides)
    except (ValueError, TypeError) as exc:
        TENSOR.fail(str(exc))
    return TensorView(seq, ts, arr)
