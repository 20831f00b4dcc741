// SPDX-License-Identifier: MIT
//! The ChannelInfo descriptor and payload schema identity (docs/protocol.md).
//!
//! A channel's payload schema is identified by its root table name, file identifier and a
//! canonical *signature* text (one line per enum value, table field and struct field). Two schemas
//! are compatible under FlatBuffers' evolution rules: same-id fields have the same name and type,
//! structs are identical, shared enum values have the same names; additions on either side are fine.

use crate::fb;
use crate::signatures as sig;
use crate::{Channel, Error, ErrorKind, Result};
use std::collections::BTreeMap;

/// A payload schema as the peers know it (from `signatures.rs`) or as a channel records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSchema {
    pub name: String,
    pub file_identifier: String,
    pub fingerprint: u64,
    pub signature: String,
}

impl PayloadSchema {
    /// `frame`, `tensor`, `frame_next` or `frame_incompatible` (the last two: evolution tests).
    pub fn builtin(which: &str) -> Option<PayloadSchema> {
        let (n, i, f, s) = match which {
            "frame" => (sig::FRAME_NAME, sig::FRAME_IDENT, sig::FRAME_FINGERPRINT, sig::FRAME_SIGNATURE),
            "tensor" => (sig::TENSOR_NAME, sig::TENSOR_IDENT, sig::TENSOR_FINGERPRINT, sig::TENSOR_SIGNATURE),
            "frame_next" => {
                (sig::FRAME_NEXT_NAME, sig::FRAME_NEXT_IDENT, sig::FRAME_NEXT_FINGERPRINT, sig::FRAME_NEXT_SIGNATURE)
            }
            "frame_incompatible" => (
                sig::FRAME_INCOMPATIBLE_NAME,
                sig::FRAME_INCOMPATIBLE_IDENT,
                sig::FRAME_INCOMPATIBLE_FINGERPRINT,
                sig::FRAME_INCOMPATIBLE_SIGNATURE,
            ),
            _ => return None,
        };
        Some(PayloadSchema { name: n.into(), file_identifier: i.into(), fingerprint: f, signature: s.into() })
    }
}

/// FNV-1a 64 of the signature text.
pub fn fingerprint(signature: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in signature.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    h
}

type Fields = BTreeMap<u32, (String, String)>;

#[derive(Default)]
struct Sig {
    enums: BTreeMap<String, (String, BTreeMap<i64, String>)>,
    objects: BTreeMap<String, (String, Fields)>,
}

fn parse(text: &str) -> Result<Sig> {
    let bad = |l: &str| Error::new(ErrorKind::Decode, format!("malformed schema signature line {l:?}"));
    let mut s = Sig::default();
    let mut cur_enum: Option<String> = None;
    let mut cur_obj: Option<String> = None;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            [] | ["root", _] | ["ident", _] => {}
            [k @ ("enum" | "union"), name, under] => {
                s.enums.insert((*name).into(), (format!("{k} {under}"), BTreeMap::new()));
                cur_enum = Some((*name).into());
                cur_obj = None;
            }
            ["value", v, name] => {
                let e = cur_enum.as_ref().and_then(|e| s.enums.get_mut(e)).ok_or_else(|| bad(line))?;
                e.1.insert(v.parse().map_err(|_| bad(line))?, (*name).into());
            }
            [k @ ("table" | "struct"), name, rest @ ..] => {
                s.objects.insert((*name).into(), (format!("{k} {}", rest.join(" ")).trim_end().to_string(), Fields::new()));
                cur_obj = Some((*name).into());
                cur_enum = None;
            }
            ["field", id, name, ty, ..] => {
                let o = cur_obj.as_ref().and_then(|o| s.objects.get_mut(o)).ok_or_else(|| bad(line))?;
                o.1.insert(id.parse().map_err(|_| bad(line))?, ((*name).into(), (*ty).into()));
            }
            _ => return Err(bad(line)),
        }
    }
    Ok(s)
}

/// Ok when messages of the `channel` schema can be read as `expected` (and vice versa).
pub fn check_compatible(channel: &PayloadSchema, expected: &PayloadSchema) -> Result<()> {
    let inc = |m: String| Err(Error::new(ErrorKind::Incompatible, m));
    if channel.name != expected.name || channel.file_identifier != expected.file_identifier {
        return inc(format!(
            "the channel carries {} messages (identifier {:?}); you expect {} ({:?})",
            channel.name, channel.file_identifier, expected.name, expected.file_identifier
        ));
    }
    if channel.fingerprint == expected.fingerprint && channel.signature == expected.signature {
        return Ok(());
    }
    let (a, b) = (parse(&channel.signature)?, parse(&expected.signature)?);
    for (name, (ka, va)) in &a.enums {
        let Some((kb, vb)) = b.enums.get(name) else { continue };
        if ka != kb {
            return inc(format!("{name} is '{ka}' in the channel's schema but '{kb}' in the schema you expect"));
        }
        for (v, na) in va {
            if let Some(nb) = vb.get(v) {
                if na != nb {
                    return inc(format!(
                        "value {v} of {name} is {na:?} in the channel's schema but {nb:?} in the schema you expect"
                    ));
                }
            }
        }
    }
    for (name, (ka, fa)) in &a.objects {
        let Some((kb, fb)) = b.objects.get(name) else { continue };
        if ka != kb || (ka.starts_with("struct") && fa != fb) {
            return inc(format!("{name} is '{ka}' {fa:?} in the channel's schema but '{kb}' {fb:?} in the schema you expect (structs cannot change)"));
        }
        for (id, (na, ta)) in fa {
            if let Some((nb, tb)) = fb.get(id) {
                if (na, ta) != (nb, tb) {
                    return inc(format!(
                        "field {id} of {ka} {name} is '{na}: {ta}' in the channel's schema but '{nb}: {tb}' in the schema you expect"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What a ChannelInfo says (decoded, owned).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelInfo {
    pub kind: u8,
    pub slot_size: u64,
    pub capacity: u32,
    pub slot_align: u32,
    pub payload: Option<PayloadSchema>,
    pub dtype: fb::DType,
    pub shape: Option<Vec<i64>>,
    pub metadata: Vec<(String, String)>,
    /// state boards: the value's numpy dtype as Python literal text `(descr, shape)` (see
    /// `schemas/channel_info.fbs`)
    pub numpy_descr: Option<String>,
}

/// Builds the ChannelInfo FlatBuffer of an SPSC channel, in the same order as Python and C++ (same bytes).
pub fn build_channel_info(
    slot_size: u64,
    capacity: u32,
    slot_align: u32,
    payload: Option<&PayloadSchema>,
    dtype: fb::DType,
    shape: Option<&[i64]>,
    metadata: &[(String, String)],
) -> Vec<u8> {
    encode_channel_info(&ChannelInfo {
        kind: fb::ChannelKind::Spsc.0,
        slot_size,
        capacity,
        slot_align,
        payload: payload.cloned(),
        dtype,
        shape: shape.map(<[i64]>::to_vec),
        metadata: metadata.to_vec(),
        numpy_descr: None,
    })
}

/// Builds the ChannelInfo FlatBuffer of any kind (strings and vectors in the same order as Python
/// and C++: payload, shape, metadata sorted by key, numpy_descr; then the table).
pub fn encode_channel_info(ci: &ChannelInfo) -> Vec<u8> {
    let mut b = flatbuffers::FlatBufferBuilder::with_capacity(1024);
    let payload = ci.payload.as_ref().map(|p| {
        let name = b.create_string(&p.name);
        let ident = b.create_string(&p.file_identifier);
        let signature = b.create_string(&p.signature);
        fb::PayloadSchema::create(
            &mut b,
            &fb::PayloadSchemaArgs {
                name: Some(name),
                file_identifier: Some(ident),
                fingerprint: fingerprint(&p.signature),
                signature: Some(signature),
                bfbs: None,
            },
        )
    });
    let shape = ci.shape.as_deref().map(|s| b.create_vector(s));
    let metadata = if ci.metadata.is_empty() {
        None
    } else {
        let mut kv: Vec<&(String, String)> = ci.metadata.iter().collect();
        kv.sort_by(|x, y| x.0.as_bytes().cmp(y.0.as_bytes()));
        let offs: Vec<_> = kv
            .iter()
            .map(|(k, v)| {
                let key = b.create_string(k);
                let value = b.create_string(v);
                fb::KeyValue::create(&mut b, &fb::KeyValueArgs { key: Some(key), value: Some(value) })
            })
            .collect();
        Some(b.create_vector(&offs))
    };
    let numpy_descr = ci.numpy_descr.as_deref().map(|d| b.create_string(d));
    let root = fb::ChannelInfo::create(
        &mut b,
        &fb::ChannelInfoArgs {
            kind: fb::ChannelKind(ci.kind),
            slot_size: ci.slot_size,
            capacity: ci.capacity,
            slot_align: ci.slot_align,
            payload,
            dtype: ci.dtype,
            shape,
            metadata,
            numpy_descr,
        },
    );
    b.finish(root, Some("SHCI"));
    b.finished_data().to_vec()
}

/// Decodes (and verifies) a ChannelInfo descriptor.
pub fn decode_channel_info(data: &[u8]) -> Result<ChannelInfo> {
    if !fb::channel_info_buffer_has_identifier(data) {
        return Err(Error::new(ErrorKind::Decode, "the descriptor is not a ChannelInfo (identifier SHCI)"));
    }
    let ci = fb::root_as_channel_info(data)
        .map_err(|e| Error::new(ErrorKind::Decode, format!("malformed ChannelInfo descriptor: {e}")))?;
    let payload = ci.payload().map(|p| PayloadSchema {
        name: p.name().unwrap_or("").into(),
        file_identifier: p.file_identifier().unwrap_or("").into(),
        fingerprint: p.fingerprint(),
        signature: p.signature().unwrap_or("").into(),
    });
    let metadata = ci
        .metadata()
        .map(|v| v.iter().map(|kv| (kv.key().into(), kv.value().unwrap_or("").into())).collect())
        .unwrap_or_default();
    Ok(ChannelInfo {
        kind: ci.kind().0,
        slot_size: ci.slot_size(),
        capacity: ci.capacity(),
        slot_align: ci.slot_align(),
        payload,
        dtype: ci.dtype(),
        shape: ci.shape().map(|s| s.iter().collect()),
        metadata,
        numpy_descr: ci.numpy_descr().map(str::to_string),
    })
}

impl Channel {
    /// The decoded ChannelInfo (None when the channel has no descriptor), checked against the header.
    pub fn channel_info(&self) -> Result<Option<ChannelInfo>> {
        let d = self.descriptor()?;
        if d.is_empty() {
            return Ok(None);
        }
        let ci = decode_channel_info(&d)?;
        let h = self.info();
        if (ci.slot_size, ci.capacity, ci.slot_align) != (h.slot_size, h.capacity, h.slot_align) {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("the ChannelInfo geometry {}x{} disagrees with the header {}x{}", ci.capacity, ci.slot_size, h.capacity, h.slot_size),
            ));
        }
        Ok(Some(ci))
    }

    /// Errors of kind [`ErrorKind::Incompatible`] unless the channel's payload schema is compatible with `expected`.
    pub fn check_schema(&self, expected: &PayloadSchema) -> Result<()> {
        match self.channel_info()? {
            Some(ChannelInfo { payload: Some(p), .. }) => check_compatible(&p, expected)
                .map_err(|e| Error::new(e.kind, format!("channel {:?}: {}", self.name(), e.message))),
            _ => Err(Error::new(
                ErrorKind::Incompatible,
                format!("channel {:?} carries raw bytes (no payload schema); you expect {}", self.name(), expected.name),
            )),
        }
    }
}
