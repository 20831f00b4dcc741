"""What a bridge sends over Zenoh, and the checks of what it receives.

Every message is one Zenoh sample on the key: the payload is the message's bytes exactly, the
attachment a 24-byte header (little-endian):

====== ===== ==========================================================================
offset size  field
====== ===== ==========================================================================
0      4     magic ``SHB1``
4      4     flags: bit 0 END (the local writer closed: no payload), other bits 0
8      8     stream: identifies the exported channel (its name, creation time and creator)
16     8     seq: the message's stream position (SPSC, broadcast) or version (state board)
====== ===== ==========================================================================

An END sample's ``seq`` is the position after the last message of the stream.

The exporter answers queries on ``KEY/@shmchan/info`` with the channel's description, a JSON
object: ``{"shmchan_bridge": 1, "name", "kind", "policy", "slot_size", "capacity", "slot_align",
"max_readers", "descriptor" (base64 of the ChannelInfo FlatBuffer, "" for none), "stream",
"next_seq", "reliable"}``. An importer checks every field before it uses any (type, range, and the
descriptor against the geometry) and raises :class:`BridgeProtocolError` naming the first that is
wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import asdict, dataclass
from typing import Any

from .. import errors as E
from .. import schema as S

__all__ = ["HEADER", "BridgeProtocolError", "RemoteInfo", "info_key", "stream_id"]

HEADER = struct.Struct("<4sIQQ")
MAGIC = b"SHB1"
FLAG_END = 1
INFO_SUFFIX = "@shmchan/info"
PROTOCOL = 1
KINDS = ("spsc", "broadcast", "state")
POLICIES = ("block", "overwrite")
MAX_INFO_BYTES = 1 << 18  # a 64 KiB descriptor in base64 and the rest fit easily


class BridgeProtocolError(ValueError, E.ShmchanError):
    """Something received over Zenoh is malformed (a bad header or channel description)."""


def info_key(key: str) -> str:
    """The key on which the exporter of ``key`` answers with the channel's description."""
    return f"{key}/{INFO_SUFFIX}"


def stream_id(name: str, created_ns: int, creator_pid: int) -> int:
    """A 64-bit identity of one channel's stream: a channel created again under the same name is
    another stream (its positions start again at 0)."""
    digest = hashlib.blake2b(f"{name}\0{created_ns}\0{creator_pid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def pack(stream: int, seq: int, flags: int = 0) -> bytes:
    return HEADER.pack(MAGIC, flags, stream, seq)


def unpack(att: bytes | None) -> tuple[int, int, int]:
    """``(flags, stream, seq)`` of an attachment; :class:`BridgeProtocolError` if it is not one."""
    if att is None:
        raise BridgeProtocolError("a sample without the bridge header")
    if len(att) != HEADER.size:
        raise BridgeProtocolError(f"a bridge header of {len(att)} bytes, not {HEADER.size}")
    magic, flags, stream, seq = HEADER.unpack(att)
    if magic != MAGIC:
        raise BridgeProtocolError(f"a bridge header with magic {magic!r}, not {MAGIC!r}")
    if flags & ~FLAG_END:
        raise BridgeProtocolError(f"a bridge header with unknown flags {flags:#x}")
    return flags, stream, seq


@dataclass(frozen=True)
class RemoteInfo:
    """The description of an exported channel (what ``KEY/@shmchan/info`` answers)."""

    name: str
    kind: str
    policy: str | None
    slot_size: int
    capacity: int
    slot_align: int
    max_readers: int
    descriptor: bytes
    stream: int
    next_seq: int
    reliable: bool

    @property
    def info(self) -> S.ChannelInfo | None:
        """The descriptor decoded (None when the channel has none); checked by :func:`decode`."""
        return S.decode_channel_info(self.descriptor) if self.descriptor else None

    def encode(self) -> bytes:
        d: dict[str, Any] = asdict(self)
        d["descriptor"] = base64.b64encode(self.descriptor).decode()
        return json.dumps({"shmchan_bridge": PROTOCOL, **d}, sort_keys=True).encode()


def _int(d: dict[str, Any], field: str, lo: int, hi: int) -> int:
    v = d.get(field)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BridgeProtocolError(f"channel description: {field} must be an integer from {lo} to {hi}, got {v!r}")
    return v


def decode(data: bytes) -> RemoteInfo:
    """Parse and check an exporter's channel description."""
    if len(data) > MAX_INFO_BYTES:
        raise BridgeProtocolError(f"channel description of {len(data)} bytes (at most {MAX_INFO_BYTES})")
    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BridgeProtocolError(f"channel description is not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise BridgeProtocolError("channel description is not a JSON object")
    if d.get("shmchan_bridge") != PROTOCOL:
        raise BridgeProtocolError(f"channel description of bridge protocol {d.get('shmchan_bridge')!r}, "
                                  f"this shmchan speaks {PROTOCOL}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise BridgeProtocolError(f"channel description: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    policy = d.get("policy")
    if kind == "broadcast" and policy not in POLICIES:
        raise BridgeProtocolError(f"channel description: policy must be block or overwrite, got {policy!r}")
    if kind != "broadcast" and policy is not None:
        raise BridgeProtocolError(f"channel description: a {kind} channel has no policy, got {policy!r}")
    name = d.get("name")
    if not isinstance(name, str) or len(name) > 1024:
        raise BridgeProtocolError(f"channel description: name must be a string, got {name!r:.80}")
    slot_size = _int(d, "slot_size", 1, 1 << 40)
    capacity = _int(d, "capacity", 1, 1 << 24)
    slot_align = _int(d, "slot_align", 8, 1 << 21)
    max_readers = _int(d, "max_readers", 0, 1024)
    stream = _int(d, "stream", 0, (1 << 64) - 1)
    next_seq = _int(d, "next_seq", 0, (1 << 64) - 1)
    if capacity & (capacity - 1) or slot_align & (slot_align - 1):
        raise BridgeProtocolError(f"channel description: capacity {capacity} and slot_align {slot_align} "
                                  "must be powers of two")
    if kind == "broadcast" and max_readers < 1:
        raise BridgeProtocolError("channel description: a broadcast channel needs max_readers >= 1")
    reliable = d.get("reliable")
    if not isinstance(reliable, bool):
        raise BridgeProtocolError(f"channel description: reliable must be true or false, got {reliable!r}")
    text = d.get("descriptor")
    if not isinstance(text, str):
        raise BridgeProtocolError("channel description: descriptor must be a base64 string")
    try:
        desc = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BridgeProtocolError(f"channel description: descriptor is not base64: {exc}") from None
    if len(desc) > 65536:
        raise BridgeProtocolError(f"channel description: a descriptor of {len(desc)} bytes (at most 65536)")
    info = RemoteInfo(name, kind, policy, slot_size, capacity, slot_align, max_readers, desc, stream, next_seq,
                      reliable)
    if desc:
        try:
            ci = S.decode_channel_info(desc)
        except S.DecodeError as exc:
            raise BridgeProtocolError(f"channel description: {exc}") from None
        if (ci.kind, ci.slot_size, ci.capacity, ci.slot_align) != (kind, slot_size, capacity, slot_align):
            raise BridgeProtocolError(
                f"channel description: its ChannelInfo says a {ci.kind} channel of {ci.capacity} slots of "
                f"{ci.slot_size} bytes aligned to {ci.slot_align}; the description {kind}, {capacity}, "
                f"{slot_size}, {slot_align}")
    return info
