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
    assert_eq!(size_of::<ffi::shmchan_place_info>(), c(9));
    assert_eq!(offset_of!(ffi::shmchan_config, kind), c(10));
    assert_eq!(offset_of!(ffi::shmchan_config, _reserved), c(11));
    assert_eq!(offset_of!(ffi::shmchan_info, kind), c(12));
    assert_eq!(offset_of!(ffi::shmchan_info, policy), c(13));
    assert_eq!(offset_of!(ffi::shmchan_msg, lost), c(14));
    assert_eq!(offset_of!(ffi::shmchan_place_info, cursor), c(15));
    assert_eq!(offset_of!(ffi::shmchan_place_info, empty_waits), c(16));
}

#[test]
fn ffi_constants_match_the_c_header() {
    let c = |i| unsafe { ffi::shmchan_rs_sizeof(i) } as u32;
    assert_eq!(ffi::SHMCHAN_KIND_SPSC, c(100));
    assert_eq!(ffi::SHMCHAN_KIND_BROADCAST, c(101));
    assert_eq!(ffi::SHMCHAN_KIND_STATE, c(102));
    assert_eq!(ffi::SHMCHAN_POLICY_BLOCK, c(103));
    assert_eq!(ffi::SHMCHAN_POLICY_OVERWRITE, c(104));
    assert_eq!(ffi::SHMCHAN_START_LATEST, c(105));
    assert_eq!(ffi::SHMCHAN_START_OLDEST, c(106));
    assert_eq!(code::ENOREADERS as u32, c(107));
    assert_eq!(code::ENOTREG as u32, c(108));
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

// ---- broadcast ----

fn bcast(tag: &str, capacity: u32, max_readers: u32, policy: Policy) -> Broadcast {
    let cfg = BroadcastConfig { slot_size: 64, capacity, max_readers, policy, ..Default::default() };
    Broadcast::create(&unique(tag), &cfg).unwrap()
}

#[test]
fn broadcast_block_every_reader_gets_every_message() {
    let b = bcast("bblock", 4, 3, Policy::Block);
    assert_eq!((b.kind(), b.policy(), b.max_readers()), (Kind::Broadcast, Policy::Block, 3));
    let h1 = Broadcast::open(b.name(), None).unwrap();
    let h2 = Broadcast::open(b.name(), None).unwrap();
    let mut w = b.writer().unwrap();
    let mut r1 = h1.reader(Start::Oldest).unwrap();
    let mut r2 = h2.reader(Start::Oldest).unwrap();
    assert_eq!(b.attached_readers(), 2);
    let t = Some(Duration::from_secs(5));
    for round in 0..5u64 {
        for i in 0..4u64 {
            w.send(&(round * 4 + i).to_le_bytes(), t).unwrap();
        }
        // the ring is full: the writer waits for the slowest reader (r2 has not read yet)
        let e = w.reserve(8, Some(Duration::ZERO)).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Timeout);
        for i in 0..4u64 {
            let want = (round * 4 + i).to_le_bytes();
            let m = r1.recv(t).unwrap();
            assert_eq!((m.bytes(), m.seq(), m.lost()), (&want[..], round * 4 + i, 0));
            m.check().unwrap();
            m.release().unwrap();
        }
        let e = w.reserve(8, Some(Duration::ZERO)).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Timeout, "r2 still holds the ring");
        let mut buf = [0u8; 64];
        for i in 0..4u64 {
            assert_eq!(r2.recv_copy(&mut buf, t).unwrap(), 8);
            assert_eq!(buf[..8], (round * 4 + i).to_le_bytes());
        }
    }
    assert_eq!((r1.lost(), r2.lost(), r1.position(), r2.outstanding()), (0, 0, 20, 0));
    let places = b.reader_places();
    assert_eq!(places.len(), 3);
    assert_eq!(places.iter().filter(|p| p.state == 1 && p.alive != 0).count(), 2);
    assert!(places.iter().filter(|p| p.state == 1).all(|p| p.messages == 20 && p.pid == std::process::id()));
    drop(r2); // a reader that leaves holds the writer back no more
    drop(w);
    assert_eq!(r1.recv(t).err().unwrap().kind, ErrorKind::Ended);
}

#[test]
fn broadcast_reader_places_run_out() {
    let b = bcast("bfull", 2, 1, Policy::Block);
    let other = Broadcast::open(b.name(), None).unwrap();
    let _r = b.reader(Start::Latest).unwrap();
    let e = other.reader(Start::Latest).err().unwrap();
    assert_eq!((e.kind, e.code), (ErrorKind::Busy, -code::ENOREADERS));
    assert!(e.message.contains("reader places"), "{}", e.message);
    // one reader per handle
    assert_eq!(b.reader(Start::Latest).err().unwrap().kind, ErrorKind::Busy);
}

#[test]
fn broadcast_start_latest_and_oldest() {
    let b = bcast("bstart", 8, 4, Policy::Block);
    let mut w = b.writer().unwrap();
    for i in 0..5u8 {
        w.send(&[i], None).unwrap();
    }
    let h = Broadcast::open(b.name(), None).unwrap();
    let mut latest = h.reader(Start::Latest).unwrap();
    assert_eq!(latest.recv(None).unwrap().bytes(), &[4]);
    let h2 = Broadcast::open(b.name(), None).unwrap();
    let mut oldest = h2.reader(Start::Oldest).unwrap();
    assert_eq!(oldest.recv(None).unwrap().bytes(), &[0]);
}

#[test]
fn broadcast_overwrite_laps_slow_readers_and_says_so() {
    let b = bcast("bover", 4, 2, Policy::Overwrite);
    let h = Broadcast::open(b.name(), None).unwrap();
    let mut r = h.reader(Start::Oldest).unwrap();
    let mut w = b.writer().unwrap();
    for i in 0..10u64 {
        w.send(&i.to_le_bytes(), Some(Duration::ZERO)).unwrap(); // never waits
    }
    // positions 0..10 written into 4 slots: the reader skips to the oldest safe one
    let m = r.recv(None).unwrap();
    let first = m.seq();
    assert!(m.lost() > 0 && first == u64::from(m.lost()), "seq {first} lost {}", m.lost());
    assert_eq!(m.bytes(), &first.to_le_bytes());
    m.release().unwrap();
    assert_eq!(r.lost(), first);
    // a message held while the writer laps the reader is no longer intact
    let m = r.recv(None).unwrap();
    let held = m.seq();
    assert!(m.is_intact());
    for i in 10..20u64 {
        w.send(&i.to_le_bytes(), Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(m.check().err().unwrap().kind, ErrorKind::Lapped);
    assert_eq!(m.release().err().unwrap().kind, ErrorKind::Lapped);
    assert_eq!(r.lost(), first + 1);
    // the copying receive never returns a torn copy: it skips ahead and counts
    let mut buf = [0u8; 64];
    let n = r.recv_copy(&mut buf, None).unwrap();
    let got = u64::from_le_bytes(buf[..n].try_into().unwrap());
    assert!(got > held + 1 && got >= 20 - 4, "got {got}");
    assert_eq!(r.lost() + 1, got, "every position below {got} but the first one delivered was lost");
    drop(w);
    let mut seen = got;
    loop {
        match r.recv(None) {
            Ok(m) => {
                assert_eq!(m.seq(), seen + 1);
                seen += 1;
            }
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Ended);
                break;
            }
        }
    }
    assert_eq!(seen, 19);
}

#[test]
fn interop_messages_detect_mixing() {
    use crate::interop::message;
    for seq in [0u64, 1, 7, 63, 1000] {
        let mut a = vec![0u8; message::len(seq, 512)];
        message::fill(&mut a, seq);
        assert_eq!(message::verify(&a, 512), Ok(seq));
        // the same length from a message 8 positions later, half copied over: caught
        let other = seq + 63;
        let mut b = vec![0u8; message::len(other, 512)];
        message::fill(&mut b, other);
        assert_eq!(a.len(), b.len());
        let half = a.len() / 2;
        a[half..].copy_from_slice(&b[half..]);
        assert!(message::verify(&a, 512).is_err());
    }
    assert!(message::verify(&[0u8; 12], 512).is_err());
}

// ---- state boards ----

#[test]
fn state_board_versions_and_values() {
    use crate::interop::counter;
    let name = unique("state");
    let st = State::create(&name, counter::SIZE as u64, None).unwrap();
    assert_eq!((st.kind(), st.version(), st.max_size()), (Kind::State, 0, counter::SIZE as u64));
    let mut buf = [0u8; counter::SIZE];
    assert_eq!(st.read(&mut buf).unwrap(), (0, 0), "nothing published yet");
    assert_eq!(st.wait_for_change(0, Some(Duration::from_millis(20))).err().unwrap().kind, ErrorKind::Timeout);
    let other = State::open(&name, None).unwrap();
    let mut w = st.writer().unwrap();
    for k in 1..=5u64 {
        assert_eq!(w.write(&counter::encode(k, k == 5)).unwrap(), k);
    }
    assert_eq!(other.read(&mut buf).unwrap(), (counter::SIZE, 5));
    assert_eq!(counter::decode(&buf), Ok((5, true)));
    let (v, ver) = other.read_vec().unwrap();
    assert_eq!((v.len(), ver), (counter::SIZE, 5));
    assert_eq!(other.wait_for_change(4, Some(Duration::ZERO)).unwrap(), 5);
    // a short value, published in place
    {
        let mut loan = w.reserve(3).unwrap();
        loan.bytes_mut().copy_from_slice(b"abc");
        loan.commit().unwrap();
    }
    assert_eq!(w.version(), 6);
    assert_eq!(other.read_vec().unwrap(), (b"abc".to_vec(), 6));
    // a buffer too small is an error that says the length
    let e = other.read(&mut [0u8; 2]).err().unwrap();
    assert!(e.message.contains("3 bytes"), "{}", e.message);
    assert!(w.write(&[0u8; counter::SIZE + 1]).is_err());
    assert_eq!(st.writer().err().unwrap().kind, ErrorKind::Busy);
}

#[test]
fn state_wait_wakes_on_a_publish_from_another_thread() {
    let name = unique("statewait");
    let st = State::create(&name, 8, None).unwrap();
    let n2 = name.clone();
    let t = std::thread::spawn(move || {
        let other = State::open(&n2, None).unwrap();
        let v = other.wait_for_change(0, Some(Duration::from_secs(10))).unwrap();
        (v, other.read_vec().unwrap())
    });
    std::thread::sleep(Duration::from_millis(50));
    let mut w = st.writer().unwrap();
    w.write(b"hello").unwrap();
    assert_eq!(t.join().unwrap(), (1, (b"hello".to_vec(), 1)));
}

#[test]
fn state_board_readers_are_never_torn() {
    use crate::interop::counter;
    let name = unique("statetorn");
    let st = State::create(&name, counter::SIZE as u64, None).unwrap();
    let n2 = name.clone();
    let reader = std::thread::spawn(move || {
        let b = State::open(&n2, None).unwrap();
        let mut buf = [0u8; counter::SIZE];
        let (mut reads, mut last) = (0u64, 0u64);
        loop {
            let (n, v) = b.read(&mut buf).unwrap();
            if v == 0 {
                std::thread::yield_now();
                continue;
            }
            let (k, fin) = counter::decode(&buf[..n]).unwrap();
            assert_eq!(k, v);
            assert!(v >= last, "version {v} after {last}");
            last = v;
            reads += 1;
            if fin {
                return reads;
            }
        }
    });
    let mut w = st.writer().unwrap();
    for k in 1..=20000u64 {
        w.write(&counter::encode(k, k == 20000)).unwrap();
    }
    assert!(reader.join().unwrap() >= 1);
}

#[test]
fn kinds_are_checked_on_open() {
    let b = bcast("kinds", 2, 1, Policy::Block);
    let e = State::open(b.name(), None).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Incompatible);
    let st = State::create(&unique("kinds2"), 8, None).unwrap();
    assert_eq!(Broadcast::open(st.name(), None).err().unwrap().kind, ErrorKind::Incompatible);
    assert_eq!(Channel::open(st.name(), None).unwrap().kind(), Kind::State);
}

#[test]
fn channel_info_of_a_state_board_round_trips() {
    use crate::interop::counter;
    use crate::schema::{encode_channel_info, ChannelInfo};
    let (slot_size, capacity, slot_align) = State::geometry(counter::SIZE as u64);
    let ci = ChannelInfo {
        kind: fb::ChannelKind::State.0,
        slot_size,
        capacity,
        slot_align,
        payload: None,
        dtype: fb::DType::Unknown,
        shape: None,
        metadata: vec![],
        numpy_descr: Some(counter::NUMPY_DESCR.into()),
    };
    let d = encode_channel_info(&ci);
    assert_eq!(decode_channel_info(&d).unwrap(), ci);
    let st = State::create(&unique("stateci"), slot_size, Some(d)).unwrap();
    assert_eq!(st.channel_info().unwrap(), Some(ci));
}

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../schemas/golden/{name}.bin", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Python's golden release-2 Frame: every media field reads back, and release 1's generated code
/// (the old reader) still reads the fields it knows.
#[test]
fn golden_frame_v2_reads_new_fields_and_old_reader_still_works() {
    let msg = golden("frame_v2");
    let f = decode_frame(&msg).unwrap();
    assert_eq!((f.seq, f.width, f.height, f.pixel_format), (41, 6, 4, fb::PixelFormat::I420));
    assert_eq!((f.pts, f.time_base, f.duration, f.keyframe), (Some(-1001), Some((1, 30000)), 1001, true));
    assert_eq!((f.color_matrix, f.color_range), (fb::ColorMatrix::BT709, fb::ColorRange::Limited));
    assert_eq!((f.sample_aspect_ratio, f.rotation, f.field_order), (Some((4, 3)), 90, fb::FieldOrder::TopFirst));
    let old = crate::frame_v1_generated::frame_v_1::root_as_frame(&msg).unwrap();
    assert_eq!((old.seq(), old.width(), old.height(), old.pixel_format().0), (41, 6, 4, 7));
    assert_eq!(old.data_offset() as usize + old.data_size() as usize, msg.len());
}

#[test]
fn golden_packet_and_audio_decode_and_truncations_are_errors() {
    let p = golden("packet");
    let pk = crate::media::decode_packet(&p).unwrap();
    assert_eq!((pk.codec, pk.pts, pk.dts, pk.keyframe, pk.data.len()), ("h264", Some(3003), Some(-1001), true, 100));
    assert_eq!(pk.extradata, &[0x01, 0x64, 0x00, 0x28, 0xff, 0xe1]);
    let a = golden("audio");
    let au = crate::media::decode_audio(&a).unwrap();
    assert_eq!((au.sample_rate, au.channels, au.samples, au.planar, au.channel_layout), (48000, 2, 5, true, "stereo"));
    let ch1: Vec<f32> = au.channel_bytes(1).chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(ch1, vec![5.0 / 8.0, 6.0 / 8.0, 7.0 / 8.0, 8.0 / 8.0, 9.0 / 8.0]);
    for cut in [8, p.len() / 2, p.len() - 1] {
        assert!(crate::media::decode_packet(&p[..cut]).is_err());
    }
    for cut in [8, a.len() / 2, a.len() - 1] {
        assert!(crate::media::decode_audio(&a[..cut]).is_err());
    }
}
