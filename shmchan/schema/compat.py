"""Payload schema identity: signatures, fingerprints and the FlatBuffers evolution rules.

A payload schema is identified by its root table name, its file identifier and a *signature*:
canonical text with one line per table field, struct field and enum value, derived from the
schema's reflection data (``flatc --binary --schema``). Two schemas are compatible when FlatBuffers'
evolution rules make them so: fields with the same id have the same name and type on both sides,
structs are identical, enum values that both sides know have the same names; fields, values and
types that only one side has (added later, at the end) are fine. Anything else raises
:class:`~shmchan.IncompatibleChannelError` naming the first difference. See docs/protocol.md.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Union

from .. import errors as E

DecodeError = E.ShmchanDecodeError

SchemaSpec = Union[str, "os.PathLike[str]", bytes, "PayloadSchema"]

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
    from ..fb.reflection.Schema import Schema

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


def _builtin(stem: str) -> PayloadSchema:
    from ..fb import _bfbs

    return PayloadSchema.from_bfbs(getattr(_bfbs, stem.upper()))


@cache
def frame_schema() -> PayloadSchema:
    """The built-in ``shmchan.fb.Frame`` schema (schemas/frame.fbs)."""
    return _builtin("frame")


@cache
def tensor_schema() -> PayloadSchema:
    """The built-in ``shmchan.fb.Tensor`` schema (schemas/tensor.fbs)."""
    return _builtin("tensor")


@cache
def packet_schema() -> PayloadSchema:
    """The built-in ``shmchan.fb.Packet`` schema (schemas/packet.fbs): compressed packets."""
    return _builtin("packet")


@cache
def audio_schema() -> PayloadSchema:
    """The built-in ``shmchan.fb.Audio`` schema (schemas/audio.fbs): uncompressed audio."""
    return _builtin("audio")


_BUILTIN = {"frame": frame_schema, "tensor": tensor_schema, "packet": packet_schema, "audio": audio_schema}


def resolve_schema(spec: SchemaSpec) -> PayloadSchema:
    """``"frame"``, ``"tensor"``, ``"packet"``, ``"audio"``, a :class:`PayloadSchema`, reflection
    bytes, or a ``.bfbs`` path."""
    if isinstance(spec, PayloadSchema):
        return spec
    if isinstance(spec, (bytes, bytearray, memoryview)):
        return PayloadSchema.from_bfbs(bytes(spec))
    if isinstance(spec, str) and spec.lower() in _BUILTIN:
        return _BUILTIN[spec.lower()]()
    if isinstance(spec, (str, os.PathLike)):
        return PayloadSchema.from_file(spec)
    raise TypeError(f"schema must be one of {', '.join(map(repr, _BUILTIN))}, a PayloadSchema, .bfbs bytes or a "
                    f"path, got {spec!r}")



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

