// SPDX-License-Identifier: MIT
//! Frame messages: the FlatBuffer header at the start of the slot, the pixels after it at a
//! 64-byte aligned `data_offset`, in the same slot (docs/protocol.md, "Frame messages").

use crate::fb;
use crate::{Error, ErrorKind, Result};

pub const DATA_ALIGN: usize = 64;

/// Sample bytes, and per plane (horizontal subsampling, vertical subsampling, samples per pixel
/// position), and whether the width must be even (docs/protocol.md, "Frame messages").
fn format_planes(fmt: fb::PixelFormat) -> Option<(u32, &'static [(u32, u32, u32)], bool)> {
    use fb::PixelFormat as P;
    const ONE: &[(u32, u32, u32)] = &[(1, 1, 1)];
    const THREE: &[(u32, u32, u32)] = &[(1, 1, 3)];
    const FOUR: &[(u32, u32, u32)] = &[(1, 1, 4)];
    const SEMI420: &[(u32, u32, u32)] = &[(1, 1, 1), (2, 2, 2)];
    const P420: &[(u32, u32, u32)] = &[(1, 1, 1), (2, 2, 1), (2, 2, 1)];
    const P422: &[(u32, u32, u32)] = &[(1, 1, 1), (2, 1, 1), (2, 1, 1)];
    const P444: &[(u32, u32, u32)] = &[(1, 1, 1), (1, 1, 1), (1, 1, 1)];
    const PACKED422: &[(u32, u32, u32)] = &[(1, 1, 2)];
    Some(match fmt {
        P::GRAY8 => (1, ONE, false),
        P::RGB24 | P::BGR24 => (1, THREE, false),
        P::RGBA32 | P::BGRA32 => (1, FOUR, false),
        P::NV12 => (1, SEMI420, false),
        P::I420 => (1, P420, false),
        P::YUYV422 | P::UYVY422 => (1, PACKED422, true),
        P::P010 => (2, SEMI420, false),
        P::YUV422P => (1, P422, false),
        P::YUV444P => (1, P444, false),
        P::GRAY16 => (2, ONE, false),
        P::RGB48 => (2, THREE, false),
        P::YUV420P10 => (2, P420, false),
        _ => return None,
    })
}

/// (offset from data_offset, stride, rows) of each plane, packed back to back.
pub fn plane_layout(fmt: fb::PixelFormat, width: u32, height: u32) -> Result<Vec<(u64, u32, u32)>> {
    if width == 0 || height == 0 || width > 1 << 16 || height > 1 << 16 {
        return Err(Error::new(ErrorKind::Decode, format!("frame size {width}x{height} outside 1..65536")));
    }
    let Some((bps, planes, even)) = format_planes(fmt) else {
        return Err(Error::new(ErrorKind::Decode, format!("unknown pixel format {}", fmt.0)));
    };
    if even && width % 2 != 0 {
        return Err(Error::new(ErrorKind::Decode, format!("{fmt:?} needs an even width, got {width}")));
    }
    let mut off = 0u64;
    let mut out = Vec::with_capacity(planes.len());
    for &(xs, ys, n) in planes {
        let row = bps * n * width.div_ceil(xs);
        let rows = height.div_ceil(ys);
        out.push((off, row, rows));
        off += u64::from(row) * u64::from(rows);
    }
    Ok(out)
}

/// Bytes per sample of a pixel format (1, or 2 for the 16-bit formats).
pub fn sample_bytes(fmt: fb::PixelFormat) -> u32 {
    format_planes(fmt).map(|f| f.0).unwrap_or(1)
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
                ..Default::default()
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
    /// release 2: media time in `time_base` units (None: the writer gave none)
    pub pts: Option<i64>,
    /// seconds per tick as (num, den); None: unknown
    pub time_base: Option<(i32, i32)>,
    pub duration: i64,
    pub keyframe: bool,
    pub color_matrix: fb::ColorMatrix,
    pub color_range: fb::ColorRange,
    pub color_primaries: fb::ColorPrimaries,
    pub color_transfer: fb::ColorTransfer,
    pub sample_aspect_ratio: Option<(i32, i32)>,
    pub rotation: u16,
    pub field_order: fb::FieldOrder,
}

fn ratio(r: Option<&fb::Rational>) -> Option<(i32, i32)> {
    r.map(|r| (r.num(), r.den())).filter(|&(_, d)| d > 0)
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
    let bps = u64::from(sample_bytes(f.pixel_format()));
    for (i, (&(o, s, r), &(_, min_s, need_r))) in planes.iter().zip(&expect).enumerate() {
        let end = o + u64::from(s) * u64::from(r.max(1) - 1) + u64::from(min_s);
        if r < need_r || s < min_s || (o as usize) < off || end > (off + size) as u64 || o % bps != 0
            || u64::from(s) % bps != 0
        {
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
        pts: Some(f.pts()).filter(|&p| p != i64::MIN),
        time_base: ratio(f.time_base()),
        duration: f.duration(),
        keyframe: f.keyframe(),
        color_matrix: f.color_matrix(),
        color_range: f.color_range(),
        color_primaries: f.color_primaries(),
        color_transfer: f.color_transfer(),
        sample_aspect_ratio: ratio(f.sample_aspect_ratio()),
        rotation: f.rotation(),
        field_order: f.field_order(),
    })
}

fn ratio_text(r: Option<(i32, i32)>) -> String {
    r.map(|(n, d)| format!("{n}/{d}")).unwrap_or_else(|| "-".into())
}

/// crc32 of a frame's pixel rows, plane by plane, without the row padding: equal for equal images
/// whatever the strides.
pub fn rows_crc(msg: &[u8], f: &FrameRef<'_>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    if let Ok(layout) = plane_layout(f.pixel_format, f.width, f.height) {
        for (&(o, s, _), &(_, row, rows)) in f.planes.iter().zip(&layout) {
            for r in 0..u64::from(rows) {
                let start = (o + r * u64::from(s)) as usize;
                h.update(&msg[start..start + row as usize]);
            }
        }
    }
    h.finalize()
}

/// One line describing a decoded frame (the peers' `--verify frames` and `shmchan-inspect` output,
/// identical in every language).
pub fn frame_line(msg: &[u8], f: &FrameRef<'_>) -> String {
    format!(
        "frame seq={} ts={} size={}x{} format={} pts={} time_base={} duration={} key={} matrix={} range={} primaries={} \
         transfer={} sar={} rotation={} field_order={} crc={:08x}",
        f.seq,
        f.timestamp_ns,
        f.width,
        f.height,
        f.pixel_format.0,
        f.pts.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        ratio_text(f.time_base),
        f.duration,
        u8::from(f.keyframe),
        f.color_matrix.0,
        f.color_range.0,
        f.color_primaries.0,
        f.color_transfer.0,
        ratio_text(f.sample_aspect_ratio),
        f.rotation,
        f.field_order.0,
        rows_crc(msg, f)
    )
}
