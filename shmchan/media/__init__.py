"""Media helpers (the ``shmchan[media]`` extra: PyAV and OpenCV).

- PyAV: :func:`send_av_frame` (a decoded ``VideoFrame`` into a Frame message, plane by plane, row
  padding trimmed), :func:`to_av_frame` (a ``VideoFrame`` view of a received frame where PyAV
  allows it), :func:`send_av_audio` / :func:`to_av_audio` (``AudioFrame`` and Audio messages),
  :func:`send_av_packet` / :func:`to_av_packet` (compressed packets), and the pixel format and
  colour mappings both ways (:func:`pixel_format_from_av`, :func:`pixel_format_to_av`,
  :func:`frame_fields_from_av`).
- OpenCV: :func:`capture_into` (``VideoCapture.read`` decoding straight into a slot) and
  :func:`to_bgr`.

PyAV and OpenCV are imported when first used, so this package imports without them.
"""

from .opencv import capture_into, to_bgr
from .pyav import (
    frame_fields_from_av,
    pixel_format_from_av,
    pixel_format_to_av,
    send_av_audio,
    send_av_frame,
    send_av_packet,
    to_av_audio,
    to_av_frame,
    to_av_packet,
)

__all__ = [
    "capture_into",
    "frame_fields_from_av",
    "pixel_format_from_av",
    "pixel_format_to_av",
    "send_av_audio",
    "send_av_frame",
    "send_av_packet",
    "to_av_audio",
    "to_av_frame",
    "to_av_packet",
    "to_bgr",
]
