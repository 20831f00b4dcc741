"""OpenCV and shmchan: capture straight into a slot, and any received frame as a BGR image.

The capture recipe: reserve a BGR24 frame of the capture's size and let ``VideoCapture.read``
decode into the slot (``read(image=...)`` writes into the array it is given when shape and type
match), so a camera frame reaches every reader without a copy of its own. OpenCV functions with a
``dst=`` argument (``cvtColor``, ``resize``, ...) write into a slot the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..schema import frame as _frame

if TYPE_CHECKING:
    from ..channel import Writer

PixelFormat = _frame.PixelFormat


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - the media extra is not installed
        raise ImportError("shmchan.media needs OpenCV: pip install 'shmchan[media]'") from exc
    return cv2


def capture_into(writer: Writer, cap: Any, *, timeout: float | None = None, **fields: Any) -> bool:
    """Read the next frame of ``cap`` (a ``cv2.VideoCapture``) straight into a new BGR24 Frame
    message. Returns False (and sends nothing) at the end of the stream. ``fields``: those of
    ``Writer.reserve_frame`` (by default ``pts`` is the capture's position in milliseconds, with a
    time base of 1/1000)."""
    cv2 = _cv2()
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if w <= 0 or h <= 0:
        raise ValueError("the capture reports no frame size (is it open?)")
    fields.setdefault("time_base", (1, 1000))
    fields.setdefault("pts", round(cap.get(cv2.CAP_PROP_POS_MSEC)))
    fs = writer.reserve_frame(w, h, "BGR24", timeout=timeout, **fields)
    try:
        px = fs.pixels
        ok, img = cap.read(image=px)
        if ok and img is not None and img.ctypes.data != px.ctypes.data:  # a capture that would not decode in place
            np.copyto(px, img.reshape(px.shape))
        del px, img
    except BaseException:
        fs.abort()
        raise
    if not ok:
        fs.abort()
        return False
    fs.commit()
    return True


_TO_BGR = {
    PixelFormat.GRAY8: "COLOR_GRAY2BGR", PixelFormat.RGB24: "COLOR_RGB2BGR", PixelFormat.RGBA32: "COLOR_RGBA2BGR",
    PixelFormat.BGRA32: "COLOR_BGRA2BGR", PixelFormat.NV12: "COLOR_YUV2BGR_NV12",
    PixelFormat.I420: "COLOR_YUV2BGR_I420", PixelFormat.YUYV422: "COLOR_YUV2BGR_YUYV",
    PixelFormat.UYVY422: "COLOR_YUV2BGR_UYVY",
}


def to_bgr(frame: _frame.FrameView, dst: npt.NDArray[np.uint8] | None = None) -> npt.NDArray[np.uint8]:
    """A received frame as an OpenCV BGR image (``dst`` if given, e.g. a slot of another channel).
    OpenCV's YUV conversions use the BT.601 limited-range matrix; for other colour information
    (``frame.color_matrix``, ``frame.color_range``) use :func:`shmchan.media.to_av_frame` and
    PyAV's ``to_ndarray(format="bgr24")``, which honour it."""
    cv2 = _cv2()
    if frame.pixel_format == PixelFormat.BGR24:
        if dst is None:
            return frame.pixels.copy()
        np.copyto(dst, frame.pixels)
        return dst
    code = _TO_BGR.get(frame.pixel_format)
    if code is None or (frame.pixel_format in (PixelFormat.NV12, PixelFormat.I420) and frame.pixels.ndim != 2):
        raise ValueError(f"no OpenCV conversion from {frame.pixel_format.name} (with this layout) to BGR")
    out = cv2.cvtColor(frame.pixels, getattr(cv2, code), dst=dst)
    return out  # type: ignore[no-any-return]
