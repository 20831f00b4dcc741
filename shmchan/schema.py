"""FlatBuffers on shmchan channels: the ChannelInfo descriptor, Frame and Tensor messages in place.

Every channel may carry a ``ChannelInfo`` FlatBuffer (``schemas/channel_info.fbs``) in its header
region: geometry, the identity of the payload schema, optional dtype/shape hints and user metadata.
The payload schema is identified by its root table name, its file identifier and a *signature*:
canonical text with one line per table field, struct field and enum value, derived from the
schema's reflection data (``flatc --binary --schema``). Two schemas are compatible when FlatBuffers'
evolution rules make them so: fields with the same id have the same name and type on both sides,
structs are identical, enum values that both sides know have the same names; fields, values and
types that only one side has (added later, at the end) are fine. Anything else raises
:class:`~shmchan.IncompatibleChannelError` naming the first difference. See docs/protocol.md.

``Frame`` and ``Tensor`` messages put a small FlatBuffer at the start of the slot and the pixels or
elements after it, in the same slot, at a 64-byte aligned ``data_offset``. Writers build only the
small header (a few hundred bytes) and write the big payload in place; readers decode in place and
get numpy arrays that are views of the slot (leases, like ``Message.ndarray``).
"""

from __future__ import annotations

import enum
import math
import os
import struct
import sys
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Union

import flatbuffers
import numpy as np
import numpy.typing as npt

from . import errors as E

if TYPE_CHECKING:
    from .channel import Channel, Slot, Writer

__all__ = [
    "ChannelInfo",
    "DecodeError",
    "FrameSlot",
    "FrameView",
    "PayloadSchema",
    "PixelFormat",
    "TensorSlot",
    "TensorView",
    "check_compatible",
    "decode_channel_info",
    "decode_frame",
    "decode_tensor",
    "encode_channel_info",
    "fingerprint",
    "frame_schema",
    "reserve_frame",
    "reserve_tensor",
    "resolve_schema",
    "send_tensor",
    "signature_from_bfbs",
    "tensor_schema",
]

DATA_ALIGN = 64  #: data_offset of Frame and Tensor messages is a multiple of this
FRAME_IDENT = b"SHFR"
TENSOR_IDENT = b"SHTN"
INFO_IDENT = b"SHCI"
MAX_PLANES = 4
MAX_DIMS = 32

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


class DecodeError(ValueError, E.ShmchanError):
    """A FlatBuffer (descriptor or message) is malformed: truncated, offsets out of range, fields
    inconsistent with the message. Raised instead of errors from deep inside generated code."""


SchemaSpec = Union[str, "os.PathLike[str]", bytes, "PayloadSchema"]

# ---------------------------------------------------------------------------------------------
# Schema identity: signatures, fingerprints, compatibility
# ---------------------------------------------------------------------------------------------

_SCALARS = {
    2: "bool", 3: "byte", 4: "ubyte", 5: "short", 6: "ushort", 7: "int", 8: "uint",
    9: "long", 10: "ulong", 11: "float", 12: "double", 13: "string",
}  # reflection.BaseType -> schema type name
_BT_UTYPE, _BT_VECTOR, _BT_OBJ, _BT_UNION, _BT_ARRAY = 1, 14, 15, 16, 17


def fingerprint(signature: str) -> int:
    """FNV-1a 64 of the signature's UTF-8 bytes: the ``fingerprint`` field of PayloadSchema."""
    h = 0xCBF29CE484222325
    for byte in signature.encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def signature_from_bfbs(bfbs: bytes) -> tuple[str, str, str]:
    """(root table name, file identifier, canonical signature text) of a reflection schema.

    The text has one line per item, in a fixed order (docs/protocol.md, "Payload schema
    identity")::

        root shmchan.fb.Frame
        ident SHFR
        enum shmchan.fb.PixelFormat ubyte
        value 0 Unknown
        struct shmchan.fb.Plane 16
        field 0 offset ulong
        table shmchan.fb.Frame
        field 5 planes [shmchan.fb.Plane]
    """
    from .fb.reflection.Schema import Schema

    data = bytes(bfbs)
    if len(data) < 8 or data[4:8] != b"BFBS":
        raise ValueError("not a FlatBuffers reflection schema (no BFBS identifier): make it with "
                         "`flatc --binary --schema file.fbs`")
    try:
        s = Schema.GetRootAs(data, 0)
        objects = [s.Objects(i) for i in range(s.ObjectsLength())]
        enums = [s.Enums(i) for i in range(s.EnumsLength())]
        root = s.RootTable()
        if root is None:
            raise ValueError("the schema has no root_type")

        def elem(bt: int, index: int) -> str:
            if bt == _BT_OBJ:
                return str(objects[index].Name().decode())
            if bt == _BT_UNION:
                return "union:" + str(enums[index].Name().decode())
            if bt == _BT_UTYPE:
                return "utype:" + str(enums[index].Name().decode())
            if index >= 0 and bt in _SCALARS and bt != 13:
                return str(enums[index].Name().decode())
            return _SCALARS.get(bt, f"basetype{bt}")

        def tname(t: Any) -> str:
            bt = t.BaseType()
            if bt == _BT_VECTOR:
                return f"[{elem(t.Element(), t.Index())}]"
            if bt == _BT_ARRAY:
                return f"[{elem(t.Element(), t.Index())}:{t.FixedLength()}]"
            return elem(bt, t.Index())

        lines = [f"root {root.Name().decode()}", f"ident {(s.FileIdent() or b'').decode() or '-'}"]
        for e in sorted(enums, key=lambda e: e.Name()):
            kind = "union" if e.IsUnion() else "enum"
            lines.append(f"{kind} {e.Name().decode()} {_SCALARS.get(e.UnderlyingType().BaseType(), '?')}")
            vals = sorted((e.Values(i) for i in range(e.ValuesLength())), key=lambda v: v.Value())
            lines.extend(f"value {v.Value()} {v.Name().decode()}" for v in vals)
        for o in sorted(objects, key=lambda o: o.Name()):
            head = f"struct {o.Name().decode()} {o.Bytesize()}" if o.IsStruct() else f"table {o.Name().decode()}"
            lines.append(head)
            fields = sorted((o.Fields(i) for i in range(o.FieldsLength())), key=lambda f: f.Id())
            for f in fields:
                dep = " deprecated" if f.Deprecated() else ""
                lines.append(f"field {f.Id()} {f.Name().decode()} {tname(f.Type())}{dep}")
        return root.Name().decode(), (s.FileIdent() or b"").decode(), "\n".join(lines) + "\n"
    except (struct.error, IndexError, UnicodeDecodeError, AttributeError) as exc:
        raise ValueError(f"malformed reflection schema: {exc}") from exc


@dataclass(frozen=True)
class PayloadSchema:
    """The identity of a payload schema, as recorded in a channel's ChannelInfo."""

    name: str  #: fully qualified root table, e.g. ``"shmchan.fb.Frame"``
    file_identifier: str  #: 4 characters, or "" when the schema has none
    signature: str  #: canonical text (see :func:`signature_from_bfbs`)
    bfbs: bytes | None = field(default=None, repr=False)  #: the reflection schema, when stored
    recorded_fingerprint: int | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> int:
        """FNV-1a 64 of the signature (as recorded in the channel, when read from one)."""
        if self.recorded_fingerprint is not None:
            return self.recorded_fingerprint
        return fingerprint(self.signature)

    @classmethod
    def from_bfbs(cls, bfbs: bytes, *, keep_bfbs: bool = False) -> PayloadSchema:
        """The schema described by a reflection file (``flatc --binary --schema x.fbs``)."""
        name, ident, sig = signature_from_bfbs(bfbs)
        return cls(name, ident, sig, bytes(bfbs) if keep_bfbs else None)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, keep_bfbs: bool = False) -> PayloadSchema:
        """The schema in a ``.bfbs`` file."""
        return cls.from_bfbs(Path(path).read_bytes(), keep_bfbs=keep_bfbs)

    def with_bfbs(self, bfbs: bytes) -> PayloadSchema:
        """A copy that also stores the reflection data in the descriptor."""
        return PayloadSchema(self.name, self.file_identifier, self.signature, bytes(bfbs))


@cache
def frame_schema() -> PayloadSchema:
    """The built-in ``shmchan.fb.Frame`` schema (schemas/frame.fbs)."""
    from .fb import _bfbs

    return PayloadSchema.from_bfbs(_bfbs.FRAME)


@cache
def tensor_schema() -> PayloadSchema:
    """The built-in ``shmchan.fb.Tensor`` schema (schemas/tensor.fbs)."""
    from .fb import _bfbs

    return PayloadSchema.from_bfbs(_bfbs.TENSOR)


def resolve_schema(spec: SchemaSpec) -> PayloadSchema:
    """``"frame"``, ``"tensor"``, a :class:`PayloadSchema`, reflection bytes, or a ``.bfbs`` path."""
    if isinstance(spec, PayloadSchema):
        return spec
    if isinstance(spec, (bytes, bytearray, memoryview)):
        return PayloadSchema.from_bfbs(bytes(spec))
    if isinstance(spec, str) and spec.lower() in ("frame", "tensor"):
        return frame_schema() if spec.lower() == "frame" else tensor_schema()
    if isinstance(spec, (str, os.PathLike)):
        return PayloadSchema.from_file(spec)
    raise TypeError(f"schema must be 'frame', 'tensor', a PayloadSchema, .bfbs bytes or a path, got {spec!r}")


@dataclass
class _Sig:
    root: str = ""
    ident: str = ""
    enums: dict[str, tuple[str, str, dict[int, str]]] = field(default_factory=dict)
    objects: dict[str, tuple[str, str, dict[int, tuple[str, str, bool]]]] = field(default_factory=dict)


def _parse_signature(text: str) -> _Sig:
    sig = _Sig()
    cur_enum: dict[int, str] | None = None
    cur_obj: dict[int, tuple[str, str, bool]] | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        w = line.split()
        if not w:
            continue
        try:
            if w[0] == "root":
                sig.root = w[1]
            elif w[0] == "ident":
                sig.ident = "" if w[1] == "-" else w[1]
            elif w[0] in ("enum", "union"):
                cur_enum, cur_obj = {}, None
                sig.enums[w[1]] = (w[0], w[2], cur_enum)
            elif w[0] == "value" and cur_enum is not None:
                cur_enum[int(w[1])] = w[2]
            elif w[0] in ("table", "struct"):
                cur_obj, cur_enum = {}, None
                sig.objects[w[1]] = (w[0], w[2] if len(w) > 2 else "", cur_obj)
            elif w[0] == "field" and cur_obj is not None:
                cur_obj[int(w[1])] = (w[2], w[3], len(w) > 4 and w[4] == "deprecated")
            else:
                raise ValueError(line)
        except (IndexError, ValueError) as exc:
            raise DecodeError(f"malformed schema signature, line {lineno}: {line!r}") from exc
    return sig


def check_compatible(channel: PayloadSchema, expected: PayloadSchema, where: str = "the channel") -> None:
    """Raise :class:`IncompatibleChannelError` unless messages written with the ``channel``
    schema can be read with the ``expected`` one and vice versa (FlatBuffers evolution rules)."""
    if channel.name != expected.name:
        raise E.IncompatibleChannelError(
            f"{where} carries {channel.name} messages (identifier {channel.file_identifier!r}); "
            f"you expect {expected.name} ({expected.file_identifier!r})")
    if channel.file_identifier != expected.file_identifier:
        raise E.IncompatibleChannelError(
            f"{where}: {channel.name} has file identifier {channel.file_identifier!r} there, "
            f"{expected.file_identifier!r} in the schema you expect")
    if channel.fingerprint == expected.fingerprint and channel.signature == expected.signature:
        return
    a, b = _parse_signature(channel.signature), _parse_signature(expected.signature)
    for name in sorted(a.enums.keys() & b.enums.keys()):
        ka, ua, va = a.enums[name]
        kb, ub, vb = b.enums[name]
        if (ka, ua) != (kb, ub):
            raise E.IncompatibleChannelError(
                f"{where}: {name} is '{ka} {ua}' in the channel's schema but '{kb} {ub}' in the schema you expect")
        for v in sorted(va.keys() & vb.keys()):
            if va[v] != vb[v]:
                raise E.IncompatibleChannelError(
                    f"{where}: value {v} of {name} is {va[v]!r} in the channel's schema but {vb[v]!r} "
                    "in the schema you expect")
    for name in sorted(a.objects.keys() & b.objects.keys()):
        ka, sa, fa = a.objects[name]
        kb, sb, fb = b.objects[name]
        if ka != kb or (ka == "struct" and (sa != sb or fa.keys() != fb.keys())):
            raise E.IncompatibleChannelError(
                f"{where}: {name} is a {ka} of {sa or '?'} bytes with fields {sorted(fa)} in the channel's schema "
                f"but a {kb} of {sb or '?'} bytes with fields {sorted(fb)} in the schema you expect")
        if ka == "struct" and fa != fb:
            diff = next(i for i in sorted(fa) if fa[i] != fb[i])
            raise E.IncompatibleChannelError(
                f"{where}: field {diff} of struct {name} is '{fa[diff][0]}: {fa[diff][1]}' in the channel's "
                f"schema but '{fb[diff][0]}: {fb[diff][1]}' in the schema you expect (structs cannot change)")
        for fid in sorted(fa.keys() & fb.keys()):
            (na, ta, _), (nb, tb, _) = fa[fid], fb[fid]
            if (na, ta) != (nb, tb):
                raise E.IncompatibleChannelError(
                    f"{where}: field {fid} of {ka} {name} is '{na}: {ta}' in the channel's schema but "
                    f"'{nb}: {tb}' in the schema you expect")


# ---------------------------------------------------------------------------------------------
# Bounds checking (FlatBuffers from a peer are not trusted)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# ChannelInfo
# ---------------------------------------------------------------------------------------------


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
    from .fb import ChannelInfo as CI
    from .fb import KeyValue as KV
    from .fb import PayloadSchema as PS

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
    from .fb.ChannelInfo import ChannelInfo as CI

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


def channel_info(ch: Channel) -> ChannelInfo | None:
    """The decoded descriptor of ``ch`` (None when it has none), checked against its header."""
    data = ch.descriptor
    if not data:
        return None
    info = decode_channel_info(data)
    kind = {1: "spsc", 2: "broadcast", 3: "state"}.get(int(ch._info["kind"]), "unknown")
    if info.kind != kind:
        raise E.CorruptChannelError(
            f"channel {ch._where()!r}: its ChannelInfo says it is a {info.kind} channel, its header {kind}")
    if (info.slot_size, info.capacity, info.slot_align) != (ch.slot_size, ch.capacity, ch.slot_align):
        raise E.CorruptChannelError(
            f"channel {ch._where()!r}: its ChannelInfo says {info.capacity} slots of {info.slot_size} bytes "
            f"aligned to {info.slot_align}, its header {ch.capacity} of {ch.slot_size} aligned to {ch.slot_align}")
    return info


def check_channel_schema(ch: Channel, expected: SchemaSpec) -> None:
    """Raise :class:`IncompatibleChannelError` unless ``ch`` carries a schema compatible with ``expected``."""
    want = resolve_schema(expected)
    try:
        info = channel_info(ch)
    except DecodeError as exc:
        raise E.IncompatibleChannelError(f"channel {ch._where()!r}: {exc}") from exc
    if info is None or info.payload is None:
        raise E.IncompatibleChannelError(
            f"channel {ch._where()!r} carries raw bytes (no payload schema in its descriptor); "
            f"you expect {want.name}")
    check_compatible(info.payload, want, f"channel {ch._where()!r}")


_CHECKED: weakref.WeakKeyDictionary[Channel, set[str]] = weakref.WeakKeyDictionary()


def _check_payload(ch: Channel, expected: PayloadSchema) -> None:
    """Writers of Frame/Tensor messages: refuse a channel declared with another payload schema
    (checked once per channel handle and schema)."""
    done = _CHECKED.setdefault(ch, set())
    if expected.name in done:
        return
    info = channel_info(ch)
    if info is not None and info.payload is not None:
        check_compatible(info.payload, expected, f"channel {ch._where()!r}")
    done.add(expected.name)

# ---------------------------------------------------------------------------------------------
# Frame
# ---------------------------------------------------------------------------------------------


class PixelFormat(enum.IntEnum):
    """``shmchan.fb.PixelFormat`` (schemas/frame.fbs)."""

    Unknown = 0
    GRAY8 = 1
    RGB24 = 2
    BGR24 = 3
    RGBA32 = 4
    BGRA32 = 5
    NV12 = 6
    I420 = 7

    @classmethod
    def parse(cls, value: PixelFormat | int | str) -> PixelFormat:
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(f"unknown pixel format {value!r}; known: {[m.name for m in cls][1:]}") from None
        return cls(value)


_PACKED = {PixelFormat.GRAY8: 1, PixelFormat.RGB24: 3, PixelFormat.BGR24: 3, PixelFormat.RGBA32: 4,
           PixelFormat.BGRA32: 4}


def plane_layout(fmt: PixelFormat, width: int, height: int) -> list[tuple[int, int, int]]:
    """(offset from data_offset, stride, rows) of each plane, packed back to back."""
    if not (0 < width <= 1 << 16 and 0 < height <= 1 << 16):
        raise ValueError(f"frame size {width}x{height} outside 1..65536")
    if fmt in _PACKED:
        return [(0, width * _PACKED[fmt], height)]
    cw, ch = (width + 1) // 2, (height + 1) // 2
    y = width * height
    if fmt == PixelFormat.NV12:
        return [(0, width, height), (y, 2 * cw, ch)]
    if fmt == PixelFormat.I420:
        return [(0, width, height), (y, cw, ch), (y + cw * ch, cw, ch)]
    raise ValueError(f"cannot lay out pixel format {fmt!r}")


def _plane_arrays(view: memoryview, fmt: PixelFormat, width: int,
                  planes: list[tuple[int, int, int]]) -> list[npt.NDArray[np.uint8]]:
    out: list[npt.NDArray[np.uint8]] = []
    for i, (off, stride, rows) in enumerate(planes):
        if fmt in _PACKED:
            c = _PACKED[fmt]
            if c == 1:
                out.append(np.ndarray((rows, width), np.uint8, buffer=view, offset=off, strides=(stride, 1)))
            else:
                out.append(np.ndarray((rows, width, c), np.uint8, buffer=view, offset=off, strides=(stride, c, 1)))
        else:
            rowbytes = width if i == 0 else (2 * ((width + 1) // 2) if fmt == PixelFormat.NV12 else (width + 1) // 2)
            out.append(np.ndarray((rows, rowbytes), np.uint8, buffer=view, offset=off, strides=(stride, 1)))
    return out


def _pixels(view: memoryview, fmt: PixelFormat, width: int, height: int, data_offset: int, data_size: int,
            planes: list[npt.NDArray[np.uint8]], layout: list[tuple[int, int, int]]) -> npt.NDArray[np.uint8]:
    if fmt in _PACKED:
        return planes[0]
    if all(s == width for _, s, _ in layout[:1]) and layout == plane_layout(fmt, width, height) and height % 2 == 0 \
            and width % 2 == 0:
        return np.ndarray((height * 3 // 2, width), np.uint8, buffer=view, offset=data_offset)
    return np.ndarray((data_size,), np.uint8, buffer=view, offset=data_offset)


@dataclass(frozen=True)
class FrameView:
    """A decoded Frame message. ``pixels`` and ``planes`` are views of the slot (read-only on the
    reader side): a packed format gives ``(height, width, channels)`` (GRAY8: ``(height, width)``);
    NV12 and I420 give ``(height * 3 // 2, width)`` (1-D if the layout is not the standard one)."""

    seq: int
    timestamp_ns: int
    width: int
    height: int
    pixel_format: PixelFormat
    data_offset: int
    data_size: int
    pixels: npt.NDArray[np.uint8] = field(repr=False)
    planes: list[npt.NDArray[np.uint8]] = field(repr=False)


_FRAME_HEADER_SIZE: dict[int, int] = {}


def _build_frame(seq: int, ts: int, width: int, height: int, fmt: int, planes: list[tuple[int, int, int]],
                 data_offset: int, data_size: int) -> bytes:
    from .fb import Frame as F
    from .fb.Plane import CreatePlane

    b = flatbuffers.Builder(256)
    b.ForceDefaults(True)  # every field present: the header's size never depends on the values
    F.FrameStartPlanesVector(b, len(planes))
    for off, stride, rows in reversed(planes):
        CreatePlane(b, off, stride, rows)
    vec = b.EndVector()
    F.FrameStart(b)
    F.FrameAddSeq(b, seq)
    F.FrameAddTimestampNs(b, ts)
    F.FrameAddDataOffset(b, data_offset)
    F.FrameAddDataSize(b, data_size)
    F.FrameAddPlanes(b, vec)
    F.FrameAddWidth(b, width)
    F.FrameAddHeight(b, height)
    F.FrameAddPixelFormat(b, fmt)
    b.Finish(F.FrameEnd(b), FRAME_IDENT)
    return bytes(b.Output())


def _round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def frame_data_offset(nplanes: int) -> int:
    """Where a Frame header with ``nplanes`` planes, written by Python, puts the pixels."""
    size = _FRAME_HEADER_SIZE.get(nplanes)
    if size is None:
        size = _FRAME_HEADER_SIZE[nplanes] = len(_build_frame(0, 0, 1, 1, 1, [(1, 1, 1)] * nplanes, 1, 1))
    return _round_up(size, DATA_ALIGN)


def frame_message_size(width: int, height: int, pixel_format: PixelFormat | int | str) -> int:
    """Bytes a Frame message of this geometry takes in a slot (header, padding and pixels)."""
    layout = plane_layout(PixelFormat.parse(pixel_format), width, height)
    off, stride, rows = layout[-1]
    return frame_data_offset(len(layout)) + off + stride * rows


def _next_position(w: Writer) -> int:
    return w.position  # the writer's own position: no system call


class _PayloadSlot:
    """Common part of FrameSlot and TensorSlot: commit/abort and the context manager."""

    __slots__ = ("_slot",)

    def __init__(self, slot: Slot) -> None:
        self._slot = slot

    @property
    def slot(self) -> Slot:
        """The underlying reserved slot."""
        return self._slot

    def commit(self) -> None:
        """Publish the message. The arrays of this object are dropped (keep none of your own)."""
        self._drop()
        self._slot.commit()

    def abort(self) -> None:
        """Drop the message; readers never see it."""
        self._drop()
        self._slot.abort()

    def _drop(self) -> None:
        """Forget the views of the slot, so that they do not pin it once it is published."""

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self._drop()
        self._slot.__exit__(t, v, tb)


class FrameSlot(_PayloadSlot):
    """A reserved slot holding a Frame header; fill ``pixels`` (or ``planes``) in place, then
    commit (``with`` commits on normal exit, aborts on an exception)."""

    __slots__ = ("_frame",)

    def __init__(self, slot: Slot, frame: FrameView) -> None:
        super().__init__(slot)
        self._frame: FrameView | None = frame

    @property
    def frame(self) -> FrameView:
        """The header fields and the writable arrays (until commit or abort)."""
        if self._frame is None:
            raise E.MessageReleasedError("this frame was already committed or aborted")
        return self._frame

    @property
    def pixels(self) -> npt.NDArray[np.uint8]:
        """The writable pixel array (see :class:`FrameView` for its shape)."""
        return self.frame.pixels

    @property
    def planes(self) -> list[npt.NDArray[np.uint8]]:
        """One writable array per plane."""
        return self.frame.planes

    def _drop(self) -> None:
        self._frame = None

    def __enter__(self) -> FrameSlot:
        return self


def reserve_frame(
    writer: Writer,
    width: int,
    height: int,
    pixel_format: PixelFormat | int | str = PixelFormat.RGB24,
    *,
    seq: int | None = None,
    timestamp_ns: int | None = None,
    timeout: float | None = None,
) -> FrameSlot:
    """Reserve a slot for one frame: the Frame header is written at its start, and the returned
    slot's ``pixels`` array is the pixel area of the same slot (64-byte aligned) to fill in place.
    ``seq`` defaults to the message's position in the stream, ``timestamp_ns`` to CLOCK_REALTIME."""
    _check_payload(writer.channel, frame_schema())
    fmt = PixelFormat.parse(pixel_format)
    rel = plane_layout(fmt, width, height)
    data_offset = frame_data_offset(len(rel))
    last_off, last_stride, last_rows = rel[-1]
    data_size = last_off + last_stride * last_rows
    layout = [(data_offset + o, s, r) for o, s, r in rel]
    slot = writer.reserve(data_offset + data_size, timeout)
    try:
        if seq is None:
            seq = _next_position(writer)
        ts = time.time_ns() if timestamp_ns is None else timestamp_ns
        head = _build_frame(seq, ts, width, height, int(fmt), layout, data_offset, data_size)
        if len(head) > data_offset:  # pragma: no cover - the size is value-independent
            raise AssertionError("Frame header larger than measured")
        view = slot.buffer
        view[: len(head)] = head
        view[len(head) : data_offset] = bytes(data_offset - len(head))
        planes = _plane_arrays(view, fmt, width, layout)
        pixels = _pixels(view, fmt, width, height, data_offset, data_size, planes, rel)
        del view
    except BaseException:
        slot.abort()
        raise
    return FrameSlot(slot, FrameView(seq, ts, width, height, fmt, data_offset, data_size, pixels, planes))


def send_frame(writer: Writer, pixels: npt.ArrayLike, pixel_format: PixelFormat | int | str = PixelFormat.RGB24,
               *, seq: int | None = None, timestamp_ns: int | None = None, timeout: float | None = None) -> None:
    """Copy an existing image (``(height, width[, channels])`` array) into a new Frame message."""
    a = np.asarray(pixels, np.uint8)
    if a.ndim not in (2, 3):
        raise ValueError(f"pixels must be (height, width) or (height, width, channels), got shape {a.shape}")
    fmt = PixelFormat.parse(pixel_format)
    h = a.shape[0] * 2 // 3 if fmt in (PixelFormat.NV12, PixelFormat.I420) else a.shape[0]
    with reserve_frame(writer, a.shape[1], h, fmt, seq=seq, timestamp_ns=timestamp_ns, timeout=timeout) as fs:
        np.copyto(fs.pixels, a.reshape(fs.pixels.shape))


def decode_frame(view: memoryview) -> FrameView:
    """Decode a Frame message in place (bounds-checked; :class:`DecodeError` if malformed)."""
    from .fb.Frame import Frame

    n = len(view)
    c = _Check(view, "Frame message")
    pos = c.root(FRAME_IDENT)
    for fid, size in ((0, 8), (1, 8), (2, 4), (3, 4), (4, 1), (6, 8), (7, 8)):
        c.field(pos, fid, size)
    nplanes = c.vector(pos, 5, 16, MAX_PLANES)
    f = Frame.GetRootAs(view, 0)
    width, height = f.Width(), f.Height()
    try:
        fmt = PixelFormat(f.PixelFormat())
    except ValueError:
        c.fail(f"unknown pixel format {f.PixelFormat()}")
    data_offset, data_size = f.DataOffset(), f.DataSize()
    if data_offset > n or data_size > n - data_offset:
        c.fail(f"pixel data [{data_offset}, +{data_size}) outside the message of {n} bytes")
    layout = []
    for i in range(nplanes):
        p = f.Planes(i)
        layout.append((p.Offset(), p.Stride(), p.Rows()))
    if fmt == PixelFormat.Unknown or not 0 < width <= 1 << 16 or not 0 < height <= 1 << 16:
        c.fail(f"frame of {width}x{height} {fmt.name}")
    expect = plane_layout(fmt, width, height)
    if len(layout) != len(expect):
        c.fail(f"{fmt.name} has {len(expect)} planes, the message {len(layout)}")
    for i, ((off, stride, rows), (_, min_stride, need_rows)) in enumerate(zip(layout, expect, strict=True)):
        if rows < need_rows or stride < min_stride or off < data_offset or \
                off + stride * (rows - 1) + min_stride > data_offset + data_size:
            c.fail(f"plane {i} (offset {off}, stride {stride}, rows {rows}) does not fit a {width}x{height} "
                   f"{fmt.name} frame in [{data_offset}, +{data_size})")
    planes = _plane_arrays(view, fmt, width, layout)
    rel = [(o - data_offset, s, r) for o, s, r in layout]
    pixels = _pixels(view, fmt, width, height, data_offset, data_size, planes, rel)
    return FrameView(f.Seq(), f.TimestampNs(), width, height, fmt, data_offset, data_size, pixels, planes)


# ---------------------------------------------------------------------------------------------
# Tensor
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorView:
    """A decoded Tensor message; ``array`` is a view of the slot."""

    seq: int
    timestamp_ns: int
    array: npt.NDArray[Any] = field(repr=False)


class TensorSlot(_PayloadSlot):
    """A reserved slot holding a Tensor header; fill ``array`` in place, then commit."""

    __slots__ = ("_array",)

    def __init__(self, slot: Slot, array: npt.NDArray[Any]) -> None:
        super().__init__(slot)
        self._array: npt.NDArray[Any] | None = array

    @property
    def array(self) -> npt.NDArray[Any]:
        """The writable array of the tensor's elements (until commit or abort)."""
        if self._array is None:
            raise E.MessageReleasedError("this tensor was already committed or aborted")
        return self._array

    def _drop(self) -> None:
        self._array = None

    def __enter__(self) -> TensorSlot:
        return self


def _build_tensor(dtype: int, shape: tuple[int, ...], strides: tuple[int, ...], data_offset: int, data_size: int,
                  seq: int, ts: int) -> bytes:
    from .fb import Tensor as T

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


def reserve_tensor(writer: Writer, shape: int | Iterable[int], dtype: npt.DTypeLike, *, seq: int | None = None,
                   timestamp_ns: int | None = None, timeout: float | None = None) -> TensorSlot:
    """Reserve a slot for a C-contiguous tensor; fill ``.array`` in place, then commit."""
    _check_payload(writer.channel, tensor_schema())
    shp = (int(shape),) if isinstance(shape, int) else tuple(int(d) for d in shape)
    if len(shp) > MAX_DIMS or any(d < 0 for d in shp):
        raise ValueError(f"shape must have at most {MAX_DIMS} non-negative dimensions, got {shp}")
    code, dt = _dtype_code(dtype)
    strides = []
    acc = dt.itemsize
    for d in reversed(shp):
        strides.append(acc)
        acc *= max(d, 1)
    strides.reverse()
    data_size = dt.itemsize * math.prod(shp)
    probe = _build_tensor(int(code), shp, tuple(strides), 1, 1, 0, 0)
    data_offset = _round_up(len(probe), DATA_ALIGN)
    slot = writer.reserve(data_offset + data_size, timeout)
    try:
        if seq is None:
            seq = _next_position(writer)
        ts = time.time_ns() if timestamp_ns is None else timestamp_ns
        head = _build_tensor(int(code), shp, tuple(strides), data_offset, data_size, seq, ts)
        view = slot.buffer
        view[: len(head)] = head
        view[len(head) : data_offset] = bytes(data_offset - len(head))
        arr: npt.NDArray[Any] = np.ndarray(shp, dt, buffer=view, offset=data_offset)
        del view
    except BaseException:
        slot.abort()
        raise
    return TensorSlot(slot, arr)


def send_tensor(writer: Writer, array: npt.ArrayLike, *, seq: int | None = None, timestamp_ns: int | None = None,
                timeout: float | None = None) -> None:
    """Write ``array`` (any shape, any strides, a supported dtype) as a Tensor message: one copy,
    straight from the array into the slot."""
    a = np.asarray(array)
    with reserve_tensor(writer, a.shape, a.dtype, seq=seq, timestamp_ns=timestamp_ns, timeout=timeout) as ts:
        np.copyto(ts.array, a, casting="equiv")


def decode_tensor(view: memoryview) -> TensorView:
    """Decode a Tensor message in place (bounds-checked; :class:`DecodeError` if malformed)."""
    from .fb.Tensor import Tensor

    n = len(view)
    c = _Check(view, "Tensor message")
    pos = c.root(TENSOR_IDENT)
    for fid, size in ((0, 1), (3, 8), (4, 8), (5, 8), (6, 8)):
        c.field(pos, fid, size)
    ndim = c.vector(pos, 1, 8, MAX_DIMS)
    nstrides = c.vector(pos, 2, 8, MAX_DIMS)
    t = Tensor.GetRootAs(view, 0)
    if t.Dtype() not in _NP_OF_DTYPE:
        c.fail(f"unknown dtype {t.Dtype()}")
    dt = np.dtype(_NP_OF_DTYPE[t.Dtype()])
    shape = tuple(int(t.Shape(i)) for i in range(ndim))
    strides = tuple(int(t.Strides(i)) for i in range(nstrides))
    if len(strides) != len(shape):
        c.fail(f"{len(shape)} dimensions but {len(strides)} strides")
    data_offset, data_size = t.DataOffset(), t.DataSize()
    if data_offset > n or data_size > n - data_offset:
        c.fail(f"tensor data [{data_offset}, +{data_size}) outside the message of {n} bytes")
    if math.prod(shape) == 0:
        arr: npt.NDArray[Any] = np.ndarray(shape, dt, buffer=view, offset=data_offset, strides=strides)
    else:
        lo = sum((d - 1) * s for d, s in zip(shape, strides, strict=True) if s < 0)
        hi = sum((d - 1) * s for d, s in zip(shape, strides, strict=True) if s > 0) + dt.itemsize
        if lo < 0 or hi > data_size:
            c.fail(f"shape {shape} with strides {strides} reaches [{lo}, {hi}) outside [0, {data_size})")
        arr = np.ndarray(shape, dt, buffer=view, offset=data_offset, strides=strides)
    return TensorView(t.Seq(), t.TimestampNs(), arr)


# ---------------------------------------------------------------------------------------------
# Code generation helper for schemas/generate.sh
# ---------------------------------------------------------------------------------------------

_EMBED = {"CHANNEL_INFO": "channel_info", "FRAME": "frame", "TENSOR": "tensor"}
_PEER_SCHEMAS = {"FRAME": "frame", "TENSOR": "tensor", "FRAME_NEXT": "frame_next",
                 "FRAME_INCOMPATIBLE": "frame_incompatible"}


def generate_support_files(outdir: str | os.PathLike[str]) -> None:
    """For schemas/generate.sh: from the freshly generated tree in ``outdir`` (its reflection code
    and .bfbs files), write the .sig files, shmchan/fb/_bfbs.py and the peers' signature constants."""
    import importlib.util

    out = Path(outdir)
    fb_dir = out / "shmchan" / "fb"
    spec = importlib.util.spec_from_file_location("shmchan.fb", fb_dir / "__init__.py",
                                                  submodule_search_locations=[str(fb_dir)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["shmchan.fb"] = module  # the generated code imports shmchan.fb.* absolutely
    spec.loader.exec_module(module)
    bdir = out / "schemas" / "bfbs"
    sigs = {}
    for path in sorted(bdir.glob("*.bfbs")):
        name, ident, sig = signature_from_bfbs(path.read_bytes())
        path.with_suffix(".sig").write_text(sig)
        sigs[path.stem] = (name, ident, sig)
    lines = ['"""Generated by schemas/generate.sh: reflection data (flatc --binary --schema) of the built-in',
             'schemas, embedded so that shmchan needs no data files. Do not edit."""', "# ruff: noqa", ""]
    for const, stem in _EMBED.items():
        hexed = (bdir / f"{stem}.bfbs").read_bytes().hex()
        lines.append(f"{const} = bytes.fromhex(")
        lines.extend(f'    "{hexed[i:i + 96]}"' for i in range(0, len(hexed), 96))
        lines.append(")")
    (out / "shmchan" / "fb" / "_bfbs.py").write_text("\n".join(lines) + "\n")

    rs = ["// Generated by schemas/generate.sh from schemas/*.fbs: payload schema identities. Do not edit.", ""]
    hh = ["// Generated by schemas/generate.sh from schemas/*.fbs: payload schema identities. Do not edit.",
          "#pragma once", "#include <cstdint>", "", "namespace shmchan_sig {", ""]
    for const, stem in _PEER_SCHEMAS.items():
        name, ident, sig = sigs[stem]
        fp = fingerprint(sig)
        rs += [f'pub const {const}_NAME: &str = "{name}";', f'pub const {const}_IDENT: &str = "{ident}";',
               f"pub const {const}_FINGERPRINT: u64 = 0x{fp:016x};", f'pub const {const}_SIGNATURE: &str = r#"{sig}"#;',
               ""]
        hh += [f'constexpr const char *{const}_NAME = "{name}";', f'constexpr const char *{const}_IDENT = "{ident}";',
               f"constexpr uint64_t {const}_FINGERPRINT = 0x{fp:016x}ull;",
               f'constexpr const char *{const}_SIGNATURE = R"sig({sig})sig";', ""]
    hh.append("}  // namespace shmchan_sig")
    (out / "peers" / "rust" / "src" / "generated" / "signatures.rs").write_text("\n".join(rs))
    (out / "peers" / "c" / "generated" / "shmchan_signatures.h").write_text("\n".join(hh) + "\n")

