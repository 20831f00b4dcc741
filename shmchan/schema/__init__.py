"""FlatBuffers on shmchan channels: the ChannelInfo descriptor, schema identity and compatibility,
and the Frame, Tensor, Packet and Audio messages written and read in place.

Every channel may carry a ``ChannelInfo`` FlatBuffer (``schemas/channel_info.fbs``) in its header
region: geometry, the identity of the payload schema, optional dtype/shape hints and user metadata
(:mod:`.info`); schemas are identified and compared by :mod:`.compat`. ``Frame``
(:mod:`.frame`), ``Tensor`` (:mod:`.tensor`), ``Packet`` (:mod:`.packet`) and ``Audio``
(:mod:`.audio`) messages put a small FlatBuffer at the start of the slot and the payload after it,
in the same slot, at a 64-byte aligned ``data_offset``. Writers build the small header once per
geometry and stamp the per-message fields in place; readers copy the header out of the slot once,
check it there, and get numpy arrays that are views of the slot (leases, like
``Message.ndarray``). :mod:`.codegen` serves ``schemas/generate.sh``.
"""

from ..errors import ShmchanDecodeError as DecodeError
from ._payload import DATA_ALIGN, NOPTS
from .audio import (
    AudioSlot,
    AudioView,
    SampleFormat,
    audio_message_size,
    decode_audio,
    reserve_audio,
    send_audio,
)
from .compat import (
    PayloadSchema,
    SchemaSpec,
    audio_schema,
    check_compatible,
    fingerprint,
    frame_schema,
    packet_schema,
    resolve_schema,
    signature_from_bfbs,
    tensor_schema,
)
from .frame import (
    FRAME_IDENT,
    MAX_PLANES,
    ColorMatrix,
    ColorPrimaries,
    ColorRange,
    ColorTransfer,
    FieldOrder,
    FrameSlot,
    FrameView,
    PixelFormat,
    decode_frame,
    frame_data_offset,
    frame_message_size,
    plane_layout,
    reserve_frame,
    send_frame,
)
from .info import (
    INFO_IDENT,
    MAX_DIMS,
    ChannelInfo,
    DType,
    channel_info,
    check_channel_schema,
    decode_channel_info,
    encode_channel_info,
    make_descriptor,
)
from .packet import PacketSlot, PacketView, decode_packet, packet_message_size, reserve_packet, send_packet
from .tensor import TENSOR_IDENT, TensorSlot, TensorView, decode_tensor, reserve_tensor, send_tensor

__all__ = [
    "DATA_ALIGN",
    "FRAME_IDENT",
    "INFO_IDENT",
    "MAX_DIMS",
    "MAX_PLANES",
    "NOPTS",
    "TENSOR_IDENT",
    "AudioSlot",
    "AudioView",
    "ChannelInfo",
    "ColorMatrix",
    "ColorPrimaries",
    "ColorRange",
    "ColorTransfer",
    "DType",
    "DecodeError",
    "FieldOrder",
    "FrameSlot",
    "FrameView",
    "PacketSlot",
    "PacketView",
    "PayloadSchema",
    "PixelFormat",
    "SampleFormat",
    "SchemaSpec",
    "TensorSlot",
    "TensorView",
    "audio_message_size",
    "audio_schema",
    "channel_info",
    "check_channel_schema",
    "check_compatible",
    "decode_audio",
    "decode_channel_info",
    "decode_frame",
    "decode_packet",
    "decode_tensor",
    "encode_channel_info",
    "fingerprint",
    "frame_data_offset",
    "frame_message_size",
    "frame_schema",
    "make_descriptor",
    "packet_message_size",
    "packet_schema",
    "plane_layout",
    "reserve_audio",
    "reserve_frame",
    "reserve_packet",
    "reserve_tensor",
    "resolve_schema",
    "send_audio",
    "send_frame",
    "send_packet",
    "send_tensor",
    "signature_from_bfbs",
    "tensor_schema",
]
