// SPDX-License-Identifier: MIT
//! Packet (compressed) and Audio messages: the FlatBuffer header at the start of the slot, the
//! payload after it at a 64-byte aligned `data_offset` (docs/protocol.md, "Packet and Audio
//! messages"). Decoded in place and verified; nothing points outside the message.

use crate::fb;
use crate::{Error, ErrorKind, Result};

fn bad<T>(what: &str, m: String) -> Result<T> {
    Err(Error::new(ErrorKind::Decode, format!("malformed {what} message: {m}")))
}

fn ratio(r: Option<&fb::Rational>) -> Option<(i32, i32)> {
    r.map(|r| (r.num(), r.den())).filter(|&(_, d)| d > 0)
}

fn payload<'m>(what: &str, msg: &'m [u8], off: u64, size: u64) -> Result<&'m [u8]> {
    let n = msg.len() as u64;
    if off > n || size > n - off {
        return bad(what, format!("payload [{off}, +{size}) outside the message of {n} bytes"));
    }
    Ok(&msg[off as usize..(off + size) as usize])
}

/// A decoded Packet message, borrowed from the message.
#[derive(Debug)]
pub struct PacketRef<'m> {
    pub seq: u64,
    pub timestamp_ns: u64,
    /// FFmpeg's codec name ("h264", "hevc", "mjpeg", "aac", ...)
    pub codec: &'m str,
    pub pts: Option<i64>,
    pub dts: Option<i64>,
    pub duration: i64,
    pub time_base: Option<(i32, i32)>,
    pub keyframe: bool,
    pub extradata: &'m [u8],
    pub width: u32,
    pub height: u32,
    /// the compressed bytes
    pub data: &'m [u8],
}

/// Decodes (and verifies) a Packet message in place.
pub fn decode_packet(msg: &[u8]) -> Result<PacketRef<'_>> {
    if !fb::packet_buffer_has_identifier(msg) {
        return bad("Packet", "no SHPK identifier".into());
    }
    let p = match fb::root_as_packet(msg) {
        Ok(p) => p,
        Err(e) => return bad("Packet", e.to_string()),
    };
    Ok(PacketRef {
        seq: p.seq(),
        timestamp_ns: p.timestamp_ns(),
        codec: p.codec().unwrap_or(""),
        pts: Some(p.pts()).filter(|&v| v != i64::MIN),
        dts: Some(p.dts()).filter(|&v| v != i64::MIN),
        duration: p.duration(),
        time_base: ratio(p.time_base()),
        keyframe: p.keyframe(),
        extradata: p.extradata().map(|v| v.bytes()).unwrap_or(&[]),
        width: p.width(),
        height: p.height(),
        data: payload("Packet", msg, p.data_offset(), p.data_size())?,
    })
}

/// Bytes per sample of an audio sample format.
pub fn sample_bytes(f: fb::SampleFormat) -> Option<u64> {
    use fb::SampleFormat as S;
    match f {
        S::U8 => Some(1),
        S::S16 => Some(2),
        S::S32 | S::F32 => Some(4),
        S::F64 | S::S64 => Some(8),
        _ => None,
    }
}

/// A decoded Audio message, borrowed from the message.
#[derive(Debug)]
pub struct AudioRef<'m> {
    pub seq: u64,
    pub timestamp_ns: u64,
    pub sample_rate: u32,
    pub sample_format: fb::SampleFormat,
    pub planar: bool,
    pub channels: u16,
    pub channel_layout: &'m str,
    /// samples per channel
    pub samples: u32,
    /// planar: bytes from one channel's plane to the next
    pub plane_stride: u64,
    pub pts: Option<i64>,
    pub time_base: Option<(i32, i32)>,
    /// the sample bytes (data_offset .. data_offset + data_size)
    pub data: &'m [u8],
}

impl AudioRef<'_> {
    /// The bytes of channel `c` (planar) or of every channel interleaved (`c` ignored).
    pub fn channel_bytes(&self, c: u16) -> &[u8] {
        let bps = sample_bytes(self.sample_format).unwrap_or(1);
        let row = (u64::from(self.samples) * bps) as usize;
        if self.planar {
            let start = (u64::from(c) * self.plane_stride) as usize;
            &self.data[start..start + row]
        } else {
            &self.data[..row * usize::from(self.channels)]
        }
    }
}

/// Decodes (and verifies) an Audio message in place.
pub fn decode_audio(msg: &[u8]) -> Result<AudioRef<'_>> {
    if !fb::audio_buffer_has_identifier(msg) {
        return bad("Audio", "no SHAU identifier".into());
    }
    let a = match fb::root_as_audio(msg) {
        Ok(a) => a,
        Err(e) => return bad("Audio", e.to_string()),
    };
    let Some(bps) = sample_bytes(a.sample_format()) else {
        return bad("Audio", format!("unknown sample format {}", a.sample_format().0));
    };
    let data = payload("Audio", msg, a.data_offset(), a.data_size())?;
    let (ch, row) = (u64::from(a.channels()), u64::from(a.samples()) * bps);
    let need = if a.planar() { a.plane_stride().saturating_mul(ch.saturating_sub(1)).saturating_add(row) } else { row * ch };
    if ch == 0 || ch > 64 || (a.planar() && a.plane_stride() < row) || need > data.len() as u64 {
        return bad("Audio", format!("{} samples x {ch} channels do not fit {} bytes", a.samples(), data.len()));
    }
    Ok(AudioRef {
        seq: a.seq(),
        timestamp_ns: a.timestamp_ns(),
        sample_rate: a.sample_rate(),
        sample_format: a.sample_format(),
        planar: a.planar(),
        channels: a.channels(),
        channel_layout: a.channel_layout().unwrap_or(""),
        samples: a.samples(),
        plane_stride: a.plane_stride(),
        pts: Some(a.pts()).filter(|&v| v != i64::MIN),
        time_base: ratio(a.time_base()),
        data,
    })
}
