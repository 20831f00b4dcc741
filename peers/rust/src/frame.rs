// SPDX-License-Identifier: MIT
//! Frame messages: the FlatBuffer header at the start of the slot, the pixels after it at a
//! 64-byte aligned `data_offset`, in the same slot (docs/protocol.md, "Frame messages").

use crate::fb;
use crate::{Error, ErrorKind, Result};

pub const DATA_ALIGN: usize = 64;

/// (offset from data_offset, stride, rows) of each plane, packed back to back.
pub fn plane_layout(fmt: fb::PixelFormat, width: u32, height: u32) -> Result<Vec<(u64, u32, u32)>> {
    if width == 0 || height == 0 || width > 1 << 16 || height > 1 << 16 {
        return Err(Error::new(ErrorKind::Decode, format!("frame size {width}x{height} outside 1..65536")));
    }
    let (w, h) = (u64::from(width), u64::from(height));
    let packed = |bpp: u32| Ok(vec![(0, width * bpp, height)]);
    let (cw, ch) = ((width + 1) / 2, (height + 1) / 2);
    match fmt {
        fb::PixelFormat::GRAY8 => packed(1),
        fb::PixelFormat::RGB24 | fb::PixelFormat::BGR24 => packed(3),
        fb::PixelFormat::RGBA32 | fb::PixelFormat::BGRA32 => packed(4),
        fb::PixelFormat::NV12 => Ok(vec![(0, width, height), (w * h, 2 * cw, ch)]),
        fb::PixelFormat::I420 => {
            Ok(vec![(0, width, height), (w * h, cw, ch), (w * h + u64::from(cw) * u64::from(ch), cw, ch)])
        }
        _ => Err(Error::new(ErrorKind::Decode, format!("unknown pixel format {}", fmt.0))),
    }
}

fn data_size(layout: &[(u64, u32, u32)]) -> u64 {
    layout.last().map(|&(o, s, r)| o + u64::from(s) * u64::from(r)).unwrap_or(0)
}

fn round_up(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

/// Builds Frame headers; keep one per writer (it reuses its buffer).
pub struct FrameWriter {
    fbb: flatbuffers::FlatBufferBuilder<'static>,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a frame's pixels go in its message, and how big the message is.
#[derive(Debug, Clone, Copy)]
pub struct FramePlacement {
    pub data_offset: usize,
    pub data_size: usize,
    pub message_size: usize,
}

impl FrameWriter {
    pub fn new() -> Self {
        FrameWriter { fbb: flatbuffers::FlatBufferBuilder::with_capacity(512) }
    }

    #[allow(clippy::too_many_arguments)]
    fn build(&mut self, seq: u64, ts: u64, width: u32, height: u32, fmt: fb::PixelFormat, layout: &[(u64, u32, u32)], data_offset: usize) {
        let b = &mut self.fbb;
        b.reset();
        let planes: Vec<fb::Plane> =
            layout.iter().map(|&(o, s, r)| fb::Plane::new(o + data_offset as u64, s, r)).collect();
        let planes = b.create_vector(&planes);
        let root = fb::Frame::create(
            b,
            &fb::FrameArgs {
                seq,
                timestamp_ns: ts,
                width,
                height,
                pixel_format: fmt,
                planes: Some(planes),
                data_offset: data_offset as u64,
                data_size: data_size(layout),
            },
        );
        b.finish(root, Some("SHFR"));
    }

    /// Placement of a frame of this geometry (message size to reserve).
    pub fn placement(&mut self, width: u32, height: u32, fmt: fb::PixelFormat) -> Result<FramePlacement> {
        let layout = plane_layout(fmt, width, height)?;
        let mut off = 0usize;
        loop {
            self.build(u64::MAX, u64::MAX, width, height, fmt, &layout, off.max(DATA_ALIGN));
            let need = round_up(self.fbb.finished_data().len(), DATA_ALIGN);
            if need <= off {
                break;
            }
            off = need;
        }
        let ds = data_size(&layout) as usize;
        Ok(FramePlacement { data_offset: off, data_size: ds, message_size: off + ds })
    }

    /// Writes the Frame header for `seq` into the start of `msg` (the whole reserved message, of
    /// `placement.message_size` bytes) and returns the pixel area, to fill in place.
    pub fn write<'m>(
        &mut self,
        msg: &'m mut [u8],
        p: &FramePlacement,
        seq: u64,
        timestamp_ns: u64,
        width: u32,
        height: u32,
        fmt: fb::PixelFormat,
    ) -> Result<&'m mut [u8]> {
        let layout = plane_layout(fmt, width, height)?;
        self.build(seq, timestamp_ns, width, height, fmt, &layout, p.data_offset);
        let head = self.fbb.finished_data();
        if head.len() > p.data_offset || msg.len() < p.message_size {
            return Err(Error::new(ErrorKind::Decode, "the frame does not fit its placement"));
        }
        msg[..head.len()].copy_from_slice(head);
        msg[head.len()..p.data_offset].fill(0);
        Ok(&mut msg[p.data_offset..p.data_offset + p.data_size])
    }
}

/// A decoded Frame message: header fields and its pixels, borrowed from the message.
#[derive(Debug)]
pub struct FrameRef<'m> {
    pub seq: u64,
    pub timestamp_ns: u64,
    pub width: u32,
    pub height: u32,
    pub pixel_format: fb::PixelFormat,
    /// (offset in the message, stride, rows) of each plane
    pub planes: Vec<(u64, u32, u32)>,
    /// the pixel area: data_offset .. data_offset + data_size
    pub pixels: &'m [u8],
}

/// Decodes (and verifies) a Frame message in place.
pub fn decode_frame(msg: &[u8]) -> Result<FrameRef<'_>> {
    let bad = |m: String| Err(Error::new(ErrorKind::Decode, format!("malformed Frame message: {m}")));
    if !fb::frame_buffer_has_identifier(msg) {
        return bad("no SHFR identifier".into());
    }
    let f = match fb::root_as_frame(msg) {
        Ok(f) => f,
        Err(e) => return bad(e.to_string()),
    };
    let (off, size) = (f.data_offset() as usize, f.data_size() as usize);
    if off > msg.len() || size > msg.len() - off {
        return bad(format!("pixels [{off}, +{size}) outside the message of {}", msg.len()));
    }
    let expect = plane_layout(f.pixel_format(), f.width(), f.height())?;
    // flatbuffers 25.x: a vector of structs is a `flatbuffers::Vector` (it was a slice in 2.x).
    let planes: Vec<(u64, u32, u32)> = f
        .planes()
        .map(|v| v.iter().map(|p| (p.offset(), p.stride(), p.rows())).collect())
        .unwrap_or_default();
    if planes.len() != expect.len() {
        return bad(format!("{} planes, the format has {}", planes.len(), expect.len()));
    }
    for (i, (&(o, s, r), &(_, min_s, need_r))) in planes.iter().zip(&expect).enumerate() {
        let end = o + u64::from(s) * u64::from(r.max(1) - 1) + u64::from(min_s);
        if r < need_r || s < min_s || (o as usize) < off || end > (off + size) as u64 {
            return bad(format!("plane {i} does not fit the pixel area"));
        }
    }
    Ok(FrameRef {
        seq: f.seq(),
        timestamp_ns: f.timestamp_ns(),
        width: f.width(),
        height: f.height(),
        pixel_format: f.pixel_format(),
        planes,
        pixels: &msg[off..off + size],
    })
}
