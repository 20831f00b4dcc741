"""Reading and writing the small FlatBuffers tables of shmchan's messages, fast and safely.

A message's FlatBuffer lives in shared memory that a peer may change while we read it. The reader
here copies the header bytes into private memory once (:func:`read_header`), then checks and parses
only that copy, so every byte of the slot's header is read exactly once and nothing a peer does
meanwhile can make two reads disagree. Parsing is cached by the table's *shape* (root position,
table size and vtable bytes): the first message of a shape is checked field by field and compiled
into one :class:`struct.Struct` that unpacks every present field at once; later messages of the
same shape cost a few ``unpack_from`` calls. Vectors and strings are checked against the copy for
every message. Anything out of range raises :class:`~shmchan.ShmchanDecodeError`.

The writer side (:class:`Template`) builds a header once per geometry with every field present,
records where the per-message fields (seq, timestamps) sit, and afterwards only copies the template
into the slot and patches those fields in place.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, NoReturn

from .. import errors as E

DecodeError = E.ShmchanDecodeError

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16x2 = struct.Struct("<HH")
_SIZES = {"B": 1, "b": 1, "?": 1, "H": 2, "h": 2, "I": 4, "i": 4, "Q": 8, "q": 8, "f": 4, "d": 8}

#: the most header bytes ever copied out of a slot (a FlatBuffer whose offsets reach further is refused)
MAX_HEADER = 4096
_FIRST_COPY = 512


class Field:
    """One field of a table as shmchan reads it.

    ``kind`` is ``"scalar"`` (``fmt`` one struct code), ``"struct"`` (an inline struct of ``fmt``
    codes, read as that many outputs), ``"vector"`` (``fmt``: the element's codes; read as a flat
    tuple), ``"bytes"`` (a ``[ubyte]`` vector, read as bytes) or ``"string"``.
    """

    __slots__ = ("default", "esize", "fid", "fmt", "kind", "limit", "names", "structs")

    def __init__(self, fid: int, names: str | tuple[str, ...], kind: str, fmt: str, default: Any = 0,
                 limit: int = 1 << 16) -> None:
        self.fid = fid
        self.names = (names,) if isinstance(names, str) else names
        self.kind = kind
        self.fmt = fmt
        self.default = default
        self.limit = limit
        self.esize = sum(_SIZES[c] for c in fmt) if kind == "vector" else 1
        self.structs: dict[int, struct.Struct] = {}  # vector length -> its elements' Struct

    @property
    def size(self) -> int:
        """Bytes of the field inside its table."""
        return sum(_SIZES[c] for c in self.fmt) if self.kind in ("scalar", "struct") else 4


class _Plan:
    """A compiled shape: one Struct for every present inline field, and the offset fields to follow."""

    __slots__ = ("getter", "offsets", "struct", "vrun")

    def __init__(self, st: struct.Struct, getter: Callable[[tuple[Any, ...]], tuple[Any, ...]],
                 offsets: list[tuple[int, int, Field]],
                 vrun: tuple[int, int, struct.Struct, tuple[int, ...]] | None) -> None:
        self.struct = st
        self.getter = getter
        self.offsets = offsets  # (output index, field position, field)
        self.vrun = vrun  # the per-message fields, when adjacent: (start, end, their Struct, output indices)


class TableSpec:
    """The fields shmchan reads from one root table, in output order."""

    def __init__(self, what: str, ident: bytes, fields: Sequence[Field], volatile: Sequence[str] = ()) -> None:
        """``volatile``: the fields that change from message to message of one stream (seq,
        timestamps): a message whose other header bytes equal the last one's is read by unpacking
        only those."""
        self.volatile = frozenset(volatile)
        self._fast: tuple[Any, ...] | None = None
        self.what = what
        self.ident = ident
        self.fields = list(fields)
        self.names: list[str] = [n for f in self.fields for n in f.names]
        self.index = {n: i for i, n in enumerate(self.names)}
        defaults: list[Any] = []
        for f in self.fields:
            if f.kind == "struct":
                defaults.extend(f.default if isinstance(f.default, tuple) else (f.default,) * len(f.fmt))
            else:
                defaults.append(f.default)
        self.defaults = tuple(defaults)
        self._plans: dict[tuple[int, int, bytes], _Plan] = {}

    def fail(self, why: str) -> NoReturn:
        raise DecodeError(f"malformed {self.what}: {why}")

    def read(self, buf: Any, n: int) -> tuple[tuple[Any, ...], bytes]:
        """(values in output order, the private header copy) of the message in ``buf`` (``n`` bytes)."""
        hdr = bytes(buf[: min(n, _FIRST_COPY)])
        fast = self._fast
        if fast is not None:
            # the same header as the last message but for the per-message fields: the bytes the full
            # parse looked at are equal (in the private copy), so its result holds but for those
            a, b, extent, pre, post, st, idx, vals = fast
            if len(hdr) >= extent and hdr[:a] == pre and hdr[b:extent] == post:
                out = list(vals)
                for i, v in zip(idx, st.unpack_from(hdr, a), strict=True):
                    out[i] = v
                return tuple(out), hdr
        while True:
            try:
                return self._parse(hdr), hdr
            except _NeedMore as more:
                end = min(n, MAX_HEADER)
                if len(hdr) >= end:
                    limit = f" (shmchan reads at most {MAX_HEADER} header bytes)" if n > MAX_HEADER else ""
                    self.fail(f"{more.args[0]} at {more.args[1]} outside the {len(hdr)} header bytes{limit}")
                hdr += bytes(buf[len(hdr) : end])  # only the bytes not copied yet: each is read once

    def volatile_run(self, hdr: bytes) -> tuple[int, int, tuple[int, ...]] | None:
        """(where the per-message fields start, the header bytes the parse looked at, their output
        indices in position order) when ``hdr`` (a private copy just read) has the shape of the last
        full parse with a run of per-message fields: then its values were parsed from the bytes
        outside that run, which any header equal to ``hdr`` there shares. None otherwise."""
        fast = self._fast
        if fast is None:
            return None
        a, b, extent, pre, post, _, idx, _ = fast
        if len(hdr) >= extent and hdr[:a] == pre and hdr[b:extent] == post and b - a == 8 * len(idx):
            return a, extent, idx
        return None

    def _parse(self, hdr: bytes) -> tuple[Any, ...]:
        size = len(hdr)
        if size < 8:
            self.fail(f"{size} bytes is too short for a FlatBuffer")
        if hdr[4:8] != self.ident:
            self.fail(f"file identifier {hdr[4:8]!r}, expected {self.ident!r}")
        root = _U32.unpack_from(hdr, 0)[0]
        if root & 3:
            self.fail(f"root table at {root} is misaligned")
        if root > size - 4:
            self._out(root, size, "root table")
        vt = root - _I32.unpack_from(hdr, root)[0]
        if vt & 1 or vt < 0:
            self.fail(f"vtable at {vt}")
        if vt > size - 4:
            self._out(vt, size, "vtable")
        vsize, tsize = _U16x2.unpack_from(hdr, vt)
        if vsize < 4 or vsize & 1 or tsize < 4:
            self.fail(f"vtable at {vt}: size {vsize}, table size {tsize}")
        if vt + vsize > size or root + tsize > size:
            self._out(max(vt + vsize, root + tsize), size, "table")
        key = (root, tsize, hdr[vt + 4 : vt + vsize])
        plan = self._plans.get(key)
        if plan is None:
            plan = self._compile(root, tsize, key[2])
        vals = plan.getter(plan.struct.unpack_from(hdr, root) + self.defaults)
        extent = max(vt + vsize, root + tsize)
        if plan.offsets:
            out = list(vals)
            for i, pos, f in plan.offsets:
                out[i], end = self._follow(hdr, pos, out[i], f)
                extent = max(extent, end)
            vals = tuple(out)
        if plan.vrun is not None:
            a, b, st, idx = plan.vrun
            self._fast = (a, b, extent, hdr[:a], hdr[b:extent], st, idx, vals)
        return vals

    @staticmethod
    def _out(pos: int, size: int, what: str) -> NoReturn:
        raise _NeedMore(what, pos)

    def _follow(self, hdr: bytes, pos: int, uoff: int, f: Field) -> tuple[Any, int]:
        size = len(hdr)
        vp = pos + uoff
        if vp & 3:
            self.fail(f"field {f.names[0]!r} points to a misaligned position {vp}")
        if vp > size - 4:
            self._out(vp, size, f"field {f.names[0]!r}")
        count = _U32.unpack_from(hdr, vp)[0]
        if count > f.limit:
            self.fail(f"field {f.names[0]!r} has {count} elements (at most {f.limit})")
        end = vp + 4 + count * f.esize
        if end > size:
            self._out(end, size, f"field {f.names[0]!r}")
        if f.kind == "vector":
            st = f.structs.get(count)
            if st is None:
                st = f.structs[count] = struct.Struct(f"<{f.fmt * count}")
            return st.unpack_from(hdr, vp + 4), end
        data = hdr[vp + 4 : end]
        if f.kind == "bytes":
            return data, end
        try:
            return data.decode(), end
        except UnicodeDecodeError:
            self.fail(f"field {f.names[0]!r} is not UTF-8")

    def _compile(self, root: int, tsize: int, vtab: bytes) -> _Plan:
        nslots = len(vtab) // 2
        slots = struct.unpack(f"<{nslots}H", vtab)
        present: list[tuple[int, str, list[int]]] = []  # (offset in table, codes, output indices)
        vol: list[tuple[int, str, int]] = []
        offsets: list[tuple[int, int, Field]] = []
        out = 0
        for f in self.fields:
            idx = list(range(out, out + len(f.names)))
            out += len(f.names)
            off = slots[f.fid] if f.fid < nslots else 0
            if off == 0:
                continue
            if off < 4 or off + f.size > tsize:
                self.fail(f"field {f.names[0]!r} at {off} outside its table of {tsize} bytes")
            if f.kind in ("scalar", "struct"):
                present.append((off, f.fmt, idx))
                if f.kind == "scalar" and f.names[0] in self.volatile:
                    vol.append((root + off, f.fmt, idx[0]))
            else:
                present.append((off, "I", idx))
                offsets.append((idx[0], root + off, f))
        present.sort()
        fmt, cur = "<", 0
        order: list[int] = []
        for off, codes, idx in present:
            if off < cur:  # two fields share bytes: legal for a verifier, never written by a builder
                self.fail(f"fields overlap at offset {off} of the table")
            fmt += "x" * (off - cur) + codes
            cur = off + sum(_SIZES[c] for c in codes)
            order.extend(idx)
        n = len(order)
        # output i comes from the unpacked value of its field, else from the defaults appended after them
        where = {o: k for k, o in enumerate(order)}
        pick = [where.get(i, n + i) for i in range(len(self.names))]
        getter = itemgetter(*pick) if len(pick) > 1 else (lambda t, p=pick[0]: (t[p],))
        vol.sort()
        vrun = None
        if vol and all(vol[i][0] + _SIZES[vol[i][1]] == vol[i + 1][0] for i in range(len(vol) - 1)):
            vfmt = "<" + "".join(c for _, c, _ in vol)
            vrun = (vol[0][0], vol[0][0] + struct.calcsize(vfmt), struct.Struct(vfmt), tuple(i for _, _, i in vol))
        plan = _Plan(struct.Struct(fmt), getter, offsets, vrun)
        if len(self._plans) >= 64:
            self._plans.clear()
        self._plans[(root, tsize, vtab)] = plan
        return plan

    def positions(self, hdr: bytes) -> dict[str, int]:
        """Where each present inline field of the table in ``hdr`` starts (for :class:`Template`)."""
        root = _U32.unpack_from(hdr, 0)[0]
        vt = root - _I32.unpack_from(hdr, root)[0]
        vsize, _ = _U16x2.unpack_from(hdr, vt)
        slots = struct.unpack_from(f"<{(vsize - 4) // 2}H", hdr, vt + 4)
        out = {}
        for f in self.fields:
            if f.fid < len(slots) and slots[f.fid] and f.kind in ("scalar", "struct"):
                out[f.names[0]] = root + slots[f.fid]
        return out


class _NeedMore(Exception):
    """The header reaches beyond the bytes copied so far."""


class Template:
    """A header built once, with the byte positions of the fields that change per message.

    ``patch`` lists field names (scalars of ``spec``) that :meth:`write` stamps for each message;
    its values come in the order of ``order`` (default: ``patch``). Runs of adjacent fields are
    written with one ``pack_into``.
    """

    __slots__ = ("data", "packers")

    def __init__(self, spec: TableSpec, header: bytes, data_offset: int, patch: Sequence[str],
                 order: Sequence[str] | None = None) -> None:
        if len(header) > data_offset:
            raise AssertionError(f"{spec.what} header of {len(header)} bytes does not fit {data_offset}")
        self.data = header + bytes(data_offset - len(header))
        pos = spec.positions(header)
        fields = {n: f for f in spec.fields for n in f.names}
        order = list(patch if order is None else order)
        items = sorted((pos[name], fields[name].fmt, order.index(name)) for name in patch)
        runs: list[tuple[int, str, list[int]]] = []
        for p, code, k in items:
            if runs and runs[-1][0] + struct.calcsize("<" + runs[-1][1]) == p:
                runs[-1] = (runs[-1][0], runs[-1][1] + code, [*runs[-1][2], k])
            else:
                runs.append((p, code, [k]))
        self.packers = [(p, struct.Struct("<" + codes).pack_into, itemgetter(*ks) if len(ks) > 1 else
                         (lambda v, k=ks[0]: (v[k],))) for p, codes, ks in runs]

    def write(self, view: Any, values: Sequence[Any]) -> None:
        """Copy the header (and the zeros up to the payload) into ``view``, then stamp ``values``."""
        view[: len(self.data)] = self.data
        for p, pack_into, get in self.packers:
            pack_into(view, p, *get(values))


def round_up(n: int, a: int) -> int:
    """``n`` rounded up to a multiple of ``a``."""
    return (n + a - 1) // a * a
