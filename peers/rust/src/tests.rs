// SPDX-License-Identifier: MIT
// Unit tests of the Rust peer: FFI layout, ring round trip, lifetimes, ChannelInfo, schemas, frames.
use super::*;
use crate::frame::{decode_frame, FrameWriter};
use crate::schema::{build_channel_info, check_compatible, decode_channel_info, PayloadSchema};
use std::time::Duration;

fn unique(tag: &str) -> String {
    format!("rs-test-{}-{tag}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos())
}

#[test]
fn ffi_structs_match_the_c_header() {
    use std::mem::{offset_of, size_of};
    let c = |i| unsafe { ffi::shmchan_rs_sizeof(i) } as usize;
    assert_eq!(size_of::<ffi::shmchan_config>(), c(0));
    assert_eq!(size_of::<ffi::shmchan_info>(), c(1));
    assert_eq!(size_of::<ffi::shmchan_stats>(), c(2));
    assert_eq!(size_of::<ffi::shmchan_msg>(), c(3));
    assert_eq!(size_of::<ffi::shmchan_diag>(), c(4));
    assert_eq!(offset_of!(ffi::shmchan_config, descriptor), c(5));
    assert_eq!(offset_of!(ffi::shmchan_info, descriptor_size), c(6));
    assert_eq!(offset_of!(ffi::shmchan_msg, data), c(7));
    assert_eq!(offset_of!(ffi::shmchan_stats, writer_alive), c(8));
}

#[test]
fn messages_round_trip_in_place() {
    let name = unique("rt");
    let ch = Channel::create(&name, &Config { slot_size: 256, capacity: 4, ..Default::default() }).unwrap();
    let mut w = ch.writer().unwrap();
    let mut r = ch.reader().unwrap();
    for i in 0..10u8 {
        w.send(&[i; 7], Some(Duration::from_secs(1))).unwrap();
        let m = r.recv(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(m.bytes(), &[i; 7]);
        assert_eq!(m.seq(), u64::from(i));
    }
    // an aborted loan is never delivered
    {
        let mut loan = w.reserve(3, None).unwrap();
        loan.bytes_mut().copy_from_slice(b"abc");
    }
    let e = r.recv(Some(Duration::ZERO)).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Timeout);
    drop(w);
    assert_eq!(r.recv(None).err().unwrap().kind, ErrorKind::Ended);
}

#[test]
fn a_second_writer_is_busy() {
    let name = unique("busy");
    let ch = Channel::create(&name, &Config { slot_size: 64, capacity: 2, ..Default::default() }).unwrap();
    let _w = ch.writer().unwrap();
    let other = Channel::open(&name, None).unwrap();
    assert_eq!(other.writer().err().unwrap().kind, ErrorKind::Busy);
}

#[test]
fn fingerprints_match_the_generated_constants() {
    for s in ["frame", "tensor", "frame_next", "frame_incompatible"] {
        let p = PayloadSchema::builtin(s).unwrap();
        assert_eq!(schema::fingerprint(&p.signature), p.fingerprint, "{s}");
    }
}

#[test]
fn schema_evolution_rules() {
    let old = PayloadSchema::builtin("frame").unwrap();
    let new = PayloadSchema::builtin("frame_next").unwrap();
    let bad = PayloadSchema::builtin("frame_incompatible").unwrap();
    let tensor = PayloadSchema::builtin("tensor").unwrap();
    check_compatible(&old, &new).unwrap();
    check_compatible(&new, &old).unwrap();
    let e = check_compatible(&bad, &old).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Incompatible);
    assert!(e.message.contains("field 3 of table shmchan.fb.Frame"), "{}", e.message);
    assert!(check_compatible(&tensor, &old).unwrap_err().message.contains("shmchan.fb.Tensor"));
}

#[test]
fn channel_info_round_trips() {
    let p = PayloadSchema::builtin("frame").unwrap();
    let meta = vec![("units".to_string(), "px".to_string()), ("source".to_string(), "golden".to_string())];
    let d = build_channel_info(925696, 8, 4096, Some(&p), fb::DType::UInt8, Some(&[480, 640, 3]), &meta);
    let ci = decode_channel_info(&d).unwrap();
    assert_eq!(ci.payload.as_ref(), Some(&p));
    assert_eq!(ci.shape, Some(vec![480, 640, 3]));
    assert_eq!(ci.metadata[0].0, "source");
    assert!(decode_channel_info(&d[..20]).is_err());
}

/// The header this crate writes for the golden geometry is byte-identical to schemas/golden/header.bin
/// (which Python and C++ are checked against too), creator pid and creation time masked.
#[test]
fn header_bytes_match_the_golden_file() {
    let golden = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/golden/header.bin")).unwrap();
    let name = unique("golden");
    let p = PayloadSchema::builtin("frame").unwrap();
    let meta = vec![("source".to_string(), "golden".to_string()), ("units".to_string(), "px".to_string())];
    let d = build_channel_info(925696, 8, 4096, Some(&p), fb::DType::UInt8, Some(&[480, 640, 3]), &meta);
    let ch = Channel::create(&name, &Config { slot_size: 925696, capacity: 8, descriptor: Some(d), ..Default::default() })
        .unwrap();
    let mut bytes = std::fs::read(format!("/dev/shm/shmchan.{name}")).unwrap();
    bytes.truncate(ch.info().data_offset as usize);
    bytes[44..48].fill(0);
    bytes[72..80].fill(0);
    assert_eq!(bytes.len(), golden.len());
    assert!(bytes == golden, "header differs from schemas/golden/header.bin");
}

#[test]
fn frames_are_written_and_decoded_in_place() {
    let name = unique("frame");
    let mut fw = FrameWriter::new();
    for fmt in [fb::PixelFormat::RGB24, fb::PixelFormat::NV12, fb::PixelFormat::I420, fb::PixelFormat::GRAY8] {
        let p = fw.placement(64, 48, fmt).unwrap();
        assert_eq!(p.data_offset % 64, 0);
        let ch = Channel::create(&format!("{name}{}", fmt.0), &Config { slot_size: p.message_size as u64, capacity: 2, ..Default::default() })
            .unwrap();
        let mut w = ch.writer().unwrap();
        let mut r = ch.reader().unwrap();
        let mut loan = w.reserve(p.message_size, None).unwrap();
        let px = fw.write(loan.bytes_mut(), &p, 5, 6, 64, 48, fmt).unwrap();
        px.fill(9);
        loan.commit().unwrap();
        let m = r.recv(None).unwrap();
        let f = decode_frame(m.bytes()).unwrap();
        assert_eq!((f.seq, f.timestamp_ns, f.width, f.height, f.pixel_format), (5, 6, 64, 48, fmt));
        assert!(f.pixels.iter().all(|&b| b == 9));
        assert_eq!(f.pixels.as_ptr() as usize % 64, 0, "pixels are 64-byte aligned in the slot");
    }
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let mut fw = FrameWriter::new();
    let p = fw.placement(8, 8, fb::PixelFormat::GRAY8).unwrap();
    let mut buf = vec![0u8; p.message_size];
    fw.write(&mut buf, &p, 1, 2, 8, 8, fb::PixelFormat::GRAY8).unwrap();
    assert!(decode_frame(&buf).is_ok());
    assert!(decode_frame(&buf[..p.data_offset]).is_err()); // truncated pixels
    assert!(decode_frame(&buf[..10]).is_err());
    let mut b2 = buf.clone();
    b2[0] = 0xff; // root offset out of range
    assert!(decode_frame(&b2).is_err());
    for i in 0..p.data_offset {
        let mut b3 = buf.clone();
        b3[i] ^= 0x5a;
        let _ = decode_frame(&b3); // any result, never a panic
    }
}
