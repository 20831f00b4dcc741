"""The ChannelInfo descriptor: a channel's geometry, payload schema, tensor hints and metadata,
stored as a FlatBuffer in the channel's header region (schemas/channel_info.fbs)."""

from __future__ import annotations

import enum
import struct
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import flatbuffers
import numpy as np
import numpy.typing as npt

from .. import errors as E
from .compat import PayloadSchema, SchemaSpec, check_compatible, fingerprint, resolve_schema

if TYPE_CHECKING:
    from ..channel import Channel

DecodeError = E.ShmchanDecodeError
INFO_IDENT = b"SHCI"
MAX_DIMS = 32

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")

class _Check:
    """Bounds checks for the parts of a FlatBuffer that shmchan reads, done before generated code
    touches them, so malformed input raises DecodeError (never IndexError or a wrong read)."""

    __slots__ = ("b", "n", "what")

    def __init__(self, buf: Any, what: str) -> None:
        self.b = buf
        self.n = len(buf)
        self.what = what

    def fail(self, why: str) -> NoReturn:
        raise DecodeError(f"malformed {self.what}: {why}")

    def u32(self, pos: int) -> int:
        if not 0 <= pos <= self.n - 4:
            self.fail(f"offset {pos} outside {self.n} bytes")
        return int(_U32.unpack_from(self.b, pos)[0])

    def root(self, ident: bytes) -> int:
        if self.n < 8:
            self.fail(f"{self.n} bytes is too short for a FlatBuffer")
        got = bytes(self.b[4:8])
        if got != ident:
            self.fail(f"file identifier {got!r}, expected {ident!r}")
        pos = self.u32(0)
        self.table(pos)
        return pos

    def table(self, pos: int) -> tuple[int, int, int]:
        """(vtable position, vtable size, table size) of the table at ``pos``, all checked."""
        if pos % 4 or not 0 <= pos <= self.n - 4:
            self.fail(f"table at {pos} outside {self.n} bytes or misaligned")
        vt = pos - int(_I32.unpack_from(self.b, pos)[0])
        if vt % 2 or not 0 <= vt <= self.n - 4:
            self.fail(f"vtable at {vt} outside {self.n} bytes")
        vsize, tsize = _U16.unpack_from(self.b, vt)[0], _U16.unpack_from(self.b, vt + 2)[0]
        if vsize < 4 or vsize % 2 or vt + vsize > self.n or tsize < 4 or pos + tsize > self.n:
            self.fail(f"vtable at {vt} (size {vsize}, table size {tsize}) does not fit {self.n} bytes")
        return vt, vsize, tsize

    def field(self, pos: int, fid: int, size: int) -> int | None:
        """Position of field ``fid`` (``size`` bytes) of the table at ``pos``, or None if absent."""
        vt, vsize, tsize = self.table(pos)
        slot = 4 + 2 * fid
        if slot >= vsize:
            return None
        off = _U16.unpack_from(self.b, vt + slot)[0]
        if off == 0:
            return None
        if off < 4 or off + size > tsize:
            self.fail(f"field {fid} at {off} outside its table of {tsize} bytes")
        return int(pos + off)

    def vector(self, pos: int, fid: int, elem: int, limit: int) -> int:
        """Length of vector field ``fid`` (0 if absent), with ``elem``-byte elements, checked."""
        fp = self.field(pos, fid, 4)
        if fp is None:
            return 0
        vp = fp + self.u32(fp)
        count = self.u32(vp)
        if count > limit or vp + 4 + count * elem > self.n:
            self.fail(f"vector of {count} elements at {vp} does not fit (limit {limit}, {self.n} bytes)")
        return count

    def string(self, pos: int, fid: int) -> None:
        self.vector(pos, fid, 1, self.n)

    def subtable(self, pos: int, fid: int) -> int | None:
        fp = self.field(pos, fid, 4)
        if fp is None:
            return None
        sub = fp + self.u32(fp)
        self.table(sub)
        return sub

    def table_vector(self, pos: int, fid: int, limit: int) -> list[int]:
        count = self.vector(pos, fid, 4, limit)
        if not count:
            return []
        fp = self.field(pos, fid, 4)
        assert fp is not None
        vp = fp + self.u32(fp)
        out = []
        for i in range(count):
            ep = vp + 4 + 4 * i
            t = ep + self.u32(ep)
            self.table(t)
            out.append(t)
        return out




class DType(enum.IntEnum):
    """``shmchan.fb.DType``: tensor element types (schemas/common.fbs)."""

    Unknown = 0
    Bool = 1
    Int8 = 2
    UInt8 = 3
    Int16 = 4
    UInt16 = 5
    Int32 = 6
    UInt32 = 7
    Int64 = 8
    UInt64 = 9
    Float16 = 10
    Float32 = 11
    Float64 = 12
    Complex64 = 13
    Complex128 = 14


_NP_OF_DTYPE: dict[int, str] = {
    DType.Bool: "?", DType.Int8: "i1", DType.UInt8: "u1", DType.Int16: "<i2", DType.UInt16: "<u2",
    DType.Int32: "<i4", DType.UInt32: "<u4", DType.Int64: "<i8", DType.UInt64: "<u8",
    DType.Float16: "<f2", DType.Float32: "<f4", DType.Float64: "<f8", DType.Complex64: "<c8",
    DType.Complex128: "<c16",
}
_DTYPE_OF_NP: dict[str, DType] = {np.dtype(v).newbyteorder("<").str: DType(k) for k, v in _NP_OF_DTYPE.items()}


def _dtype_code(dtype: npt.DTypeLike) -> tuple[DType, np.dtype[Any]]:
    dt = np.dtype(dtype)
    code = _DTYPE_OF_NP.get(dt.newbyteorder("<").str)
    if code is None:
        raise TypeError(f"dtype {dt} has no shmchan.fb.DType (supported: bool, (u)int8-64, float16-64, complex64/128)")
    return code, np.dtype(_NP_OF_DTYPE[code])


@dataclass(frozen=True)
class ChannelInfo:
    """A channel's decoded descriptor (``shmchan.fb.ChannelInfo``)."""

    kind: str
    slot_size: int
    capacity: int
    slot_align: int
    payload: PayloadSchema | None = None
    dtype: np.dtype[Any] | None = None
    shape: tuple[int, ...] | None = None  #: -1 means "any size" in that dimension
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: state boards of a structured or sub-array dtype: numpy.lib.format.dtype_to_descr, as text
    numpy_descr: str | None = None


_KIND_CODES = {"spsc": 1, "broadcast": 2, "state": 3}
_KIND_NAMES = {v: k for k, v in _KIND_CODES.items()}


def encode_channel_info(info: ChannelInfo) -> bytes:
    """The ChannelInfo FlatBuffer. Built in exactly the order the C++ and Rust peers use, so a
    channel described the same way has the same descriptor bytes in every language."""
    from ..fb import ChannelInfo as CI
    from ..fb import KeyValue as KV
    from ..fb import PayloadSchema as PS

    b = flatbuffers.Builder(1024)
    payload = None
    if info.payload is not None:
        p = info.payload
        name = b.CreateString(p.name)
        ident = b.CreateString(p.file_identifier)
        sig = b.CreateString(p.signature)
        bfbs = b.CreateByteVector(p.bfbs) if p.bfbs else None
        PS.PayloadSchemaStart(b)
        PS.PayloadSchemaAddFingerprint(b, fingerprint(p.signature))
        if bfbs is not None:
            PS.PayloadSchemaAddBfbs(b, bfbs)
        PS.PayloadSchemaAddSignature(b, sig)
        PS.PayloadSchemaAddFileIdentifier(b, ident)
        PS.PayloadSchemaAddName(b, name)
        payload = PS.PayloadSchemaEnd(b)
    shape = None
    if info.shape is not None:
        CI.ChannelInfoStartShapeVector(b, len(info.shape))
        for d in reversed(info.shape):
            b.PrependInt64(int(d))
        shape = b.EndVector()
    meta = None
    if info.metadata:
        kvs = []
        for k in sorted(info.metadata, key=lambda s: s.encode()):
            ko = b.CreateString(k)
            vo = b.CreateString(info.metadata[k])
            KV.KeyValueStart(b)
            KV.KeyValueAddValue(b, vo)
            KV.KeyValueAddKey(b, ko)
            kvs.append(KV.KeyValueEnd(b))
        CI.ChannelInfoStartMetadataVector(b, len(kvs))
        for o in reversed(kvs):
            b.PrependUOffsetTRelative(o)
        meta = b.EndVector()
    dtype = _dtype_code(info.dtype)[0] if info.dtype is not None else DType.Unknown
    descr = b.CreateString(info.numpy_descr) if info.numpy_descr is not None else None
    CI.ChannelInfoStart(b)
    CI.ChannelInfoAddSlotSize(b, info.slot_size)
    if descr is not None:
        CI.ChannelInfoAddNumpyDescr(b, descr)
    if meta is not None:
        CI.ChannelInfoAddMetadata(b, meta)
    if shape is not None:
        CI.ChannelInfoAddShape(b, shape)
    if payload is not None:
        CI.ChannelInfoAddPayload(b, payload)
    CI.ChannelInfoAddSlotAlign(b, info.slot_align)
    CI.ChannelInfoAddCapacity(b, info.capacity)
    CI.ChannelInfoAddDtype(b, int(dtype))
    CI.ChannelInfoAddKind(b, _KIND_CODES.get(info.kind, 0))
    b.Finish(CI.ChannelInfoEnd(b), INFO_IDENT)
    return bytes(b.Output())


def decode_channel_info(data: bytes) -> ChannelInfo:
    """Decode (and bounds-check) a ChannelInfo descriptor; :class:`DecodeError` if malformed."""
    from ..fb.ChannelInfo import ChannelInfo as CI

    c = _Check(data, "ChannelInfo descriptor")
    pos = c.root(INFO_IDENT)
    for fid, size in ((0, 1), (1, 8), (2, 4), (3, 4), (5, 1)):
        c.field(pos, fid, size)
    nshape = c.vector(pos, 6, 8, MAX_DIMS)
    pp = c.subtable(pos, 4)
    if pp is not None:
        for fid in (0, 1, 3):
            c.string(pp, fid)
        c.field(pp, 2, 8)
        c.vector(pp, 4, 1, 1 << 16)
    for kv in c.table_vector(pos, 7, 4096):
        c.string(kv, 0)
        c.string(kv, 1)
    c.string(pos, 8)
    try:
        ci = CI.GetRootAs(data, 0)
        payload = None
        p = ci.Payload()
        if p is not None:
            bfbs = bytes(p.BfbsAsNumpy().tobytes()) if not p.BfbsIsNone() else None
            payload = PayloadSchema((p.Name() or b"").decode(), (p.FileIdentifier() or b"").decode(),
                                    (p.Signature() or b"").decode(), bfbs, p.Fingerprint())
        dt = ci.Dtype()
        dtype = np.dtype(_NP_OF_DTYPE[dt]) if dt in _NP_OF_DTYPE else None
        shape = tuple(int(ci.Shape(i)) for i in range(nshape)) if not ci.ShapeIsNone() else None
        meta = {}
        for i in range(ci.MetadataLength()):
            kv = ci.Metadata(i)
            meta[(kv.Key() or b"").decode()] = (kv.Value() or b"").decode()
        descr = ci.NumpyDescr()
        return ChannelInfo(_KIND_NAMES.get(ci.Kind(), f"unknown({ci.Kind()})"), ci.SlotSize(), ci.Capacity(),
                           ci.SlotAlign(), payload, dtype, shape, meta,
                           descr.decode() if descr is not None else None)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise DecodeError(f"malformed ChannelInfo descriptor: {exc}") from exc


def make_descriptor(
    schema: SchemaSpec | None,
    *,
    slot_size: int,
    capacity: int,
    slot_align: int,
    dtype: npt.DTypeLike | None = None,
    shape: Iterable[int] | None = None,
    metadata: Mapping[str, str] | None = None,
    kind: str = "spsc",
    numpy_descr: str | None = None,
) -> bytes:
    """The descriptor ``Channel.create(schema=...)`` (and Broadcast/State.create) stores."""
    if shape is not None:
        shape = tuple(int(d) for d in shape)
        if len(shape) > MAX_DIMS or any(d < -1 for d in shape):
            raise ValueError(f"shape hint must have at most {MAX_DIMS} dimensions of size >= -1, got {shape}")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("metadata must map str to str")
    info = ChannelInfo(
        kind, slot_size, capacity, slot_align,
        resolve_schema(schema) if schema is not None else None,
        _dtype_code(dtype)[1] if dtype is not None else None,
        shape, dict(metadata or {}), numpy_descr,
    )
    return encode_channel_info(info)


def is_channel_info(data: bytes) -> bool:
    """Whether descriptor bytes claim to be a ChannelInfo (its file identifier, ``SHCI``, at bytes
    4-7). Other bytes are an opaque descriptor (docs/protocol.md R47): no ChannelInfo at all."""
    return len(data) >= 8 and bytes(data[4:8]) == INFO_IDENT


def check_channel_info(data: bytes, where: str, kind: str, geometry: tuple[int, int, int]) -> ChannelInfo | None:
    """The ChannelInfo in descriptor ``data`` (None for an opaque descriptor), verified and checked
    against the header's ``kind`` and ``(slot_size, capacity, slot_align)`` (R47, R48).

    A descriptor that claims to be a ChannelInfo but does not verify, or that contradicts the header,
    raises :class:`CorruptChannelError` (the decoding error is its cause): the same exception from
    ``open``, ``open(schema=)`` and ``.info``."""
    if not is_channel_info(data):
        return None
    try:
        info = decode_channel_info(data)
    except DecodeError as exc:
        raise E.CorruptChannelError(f"channel {where!r}: {exc}") from exc
    if info.kind != kind:
        raise E.CorruptChannelError(
            f"channel {where!r}: its ChannelInfo says it is a {info.kind} channel, its header {kind}")
    slot_size, capacity, slot_align = geometry
    if (info.slot_size, info.capacity, info.slot_align) != geometry:
        raise E.CorruptChannelError(
            f"channel {where!r}: its ChannelInfo says {info.capacity} slots of {info.slot_size} bytes "
            f"aligned to {info.slot_align}, its header {capacity} of {slot_size} aligned to {slot_align}")
    return info


def channel_info(ch: Channel) -> ChannelInfo | None:
    """The decoded ChannelInfo of ``ch``, checked against its header: None when the channel has no
    descriptor or an opaque one (not a ChannelInfo); :class:`CorruptChannelError` when it claims to be
    one but is malformed or contradicts the header (see :func:`check_channel_info`)."""
    kind = {1: "spsc", 2: "broadcast", 3: "state"}.get(int(ch._info["kind"]), "unknown")
    return check_channel_info(ch.descriptor, ch._where(), kind, (ch.slot_size, ch.capacity, ch.slot_align))


def check_channel_schema(ch: Channel, expected: SchemaSpec) -> None:
    """Raise :class:`IncompatibleChannelError` unless ``ch`` carries a schema compatible with ``expected``
    (:class:`CorruptChannelError` for a ChannelInfo that does not verify or agree with the header)."""
    want = resolve_schema(expected)
    info = channel_info(ch)  # CorruptChannelError for a ChannelInfo that does not verify or agree
    if info is None or info.payload is None:
        what = "no ChannelInfo descriptor" if info is None else "no payload schema in its ChannelInfo"
        raise E.IncompatibleChannelError(f"channel {ch._where()!r} carries raw bytes ({what}); you expect {want.name}")
    check_compatible(info.payload, want, f"channel {ch._where()!r}")


_CHECKED: weakref.WeakKeyDictionary[Channel, set[str]] = weakref.WeakKeyDictionary()


def _check_payload(ch: Channel, expected: PayloadSchema) -> None:
    """Writers of Frame/Tensor messages: refuse a channel declared with another payload schema
    (checked once per channel handle and schema)."""
    done = _CHECKED.get(ch)
    if done is not None and expected.name in done:
        return  # the per-message path: one lookup, nothing allocated
    if done is None:
        done = _CHECKED.setdefault(ch, set())
    info = channel_info(ch)
    if info is not None and info.payload is not None:
        check_compatible(info.payload, expected, f"channel {ch._where()!r}")
    done.add(expected.name)

