// SPDX-License-Identifier: MIT
//! Tensor messages: the FlatBuffer header at the start of the slot, the elements after it at a
//! 64-byte aligned `data_offset` (docs/protocol.md, "Tensor messages").

use crate::fb;
use crate::{Error, ErrorKind, Result};

/// A decoded Tensor message; `data` borrows the message.
#[derive(Debug)]
pub struct TensorRef<'m> {
    pub dtype: fb::DType,
    pub shape: Vec<u64>,
    pub strides: Vec<i64>,
    pub seq: u64,
    pub timestamp_ns: u64,
    pub data: &'m [u8],
}

/// Bytes per element of a dtype (0 if unknown).
pub fn itemsize(d: fb::DType) -> usize {
    match d {
        fb::DType::Bool | fb::DType::Int8 | fb::DType::UInt8 => 1,
        fb::DType::Int16 | fb::DType::UInt16 | fb::DType::Float16 => 2,
        fb::DType::Int32 | fb::DType::UInt32 | fb::DType::Float32 => 4,
        fb::DType::Int64 | fb::DType::UInt64 | fb::DType::Float64 | fb::DType::Complex64 => 8,
        fb::DType::Complex128 => 16,
        _ => 0,
    }
}

/// Decodes (and verifies) a Tensor message in place.
pub fn decode_tensor(msg: &[u8]) -> Result<TensorRef<'_>> {
    let bad = |m: String| Err(Error::new(ErrorKind::Decode, format!("malformed Tensor message: {m}")));
    if !fb::tensor_buffer_has_identifier(msg) {
        return bad("no SHTN identifier".into());
    }
    let t = match fb::root_as_tensor(msg) {
        Ok(t) => t,
        Err(e) => return bad(e.to_string()),
    };
    let (off, size) = (t.data_offset() as usize, t.data_size() as usize);
    if off > msg.len() || size > msg.len() - off {
        return bad(format!("data [{off}, +{size}) outside the message of {}", msg.len()));
    }
    let shape: Vec<u64> = t.shape().map(|v| v.iter().collect()).unwrap_or_default();
    let strides: Vec<i64> = t.strides().map(|v| v.iter().collect()).unwrap_or_default();
    let isz = itemsize(t.dtype());
    if isz == 0 || shape.len() != strides.len() {
        return bad("unknown dtype or shape/strides mismatch".into());
    }
    if shape.iter().all(|&d| d > 0) {
        let mut hi: i128 = isz as i128;
        for (&d, &s) in shape.iter().zip(&strides) {
            if s < 0 {
                return bad("negative strides".into());
            }
            hi += (i128::from(d) - 1) * i128::from(s);
        }
        if hi > size as i128 {
            return bad(format!("elements reach {hi} bytes, data has {size}"));
        }
    }
    Ok(TensorRef {
        dtype: t.dtype(),
        shape,
        strides,
        seq: t.seq(),
        timestamp_ns: t.timestamp_ns(),
        data: &msg[off..off + size],
    })
}
