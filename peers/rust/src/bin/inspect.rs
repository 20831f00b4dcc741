// SPDX-License-Identifier: MIT
// shmchan-inspect FILE...: decodes message files (Frame, Packet or Audio, by file identifier) and
// prints one line per message with every field, the same lines as the C++ peer's shmchan-inspect.
// A Frame is also read with release 1's generated code (frame_v1), as an old reader would: a line
// "v1 ..." with the fields that release knew. Exits 1 on a message that does not decode.

use shmchan::frame::{decode_frame, frame_line};
use shmchan::frame_v1_generated::frame_v_1 as frame_v1;
use shmchan::media::{decode_audio, decode_packet, sample_bytes};

fn ratio(r: Option<(i32, i32)>) -> String {
    r.map(|(n, d)| format!("{n}/{d}")).unwrap_or_else(|| "-".into())
}

fn opt(v: Option<i64>) -> String {
    v.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".into();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn inspect(msg: &[u8]) -> Result<(), String> {
    let ident = msg.get(4..8).unwrap_or(&[]);
    match ident {
        b"SHFR" => {
            let f = decode_frame(msg).map_err(|e| e.to_string())?;
            println!("{}", frame_line(msg, &f));
            let old = frame_v1::root_as_frame(msg).map_err(|e| format!("release-1 reader: {e}"))?;
            let planes: Vec<String> = old
                .planes()
                .map(|v| v.iter().map(|p| format!("{}:{}:{}", p.offset(), p.stride(), p.rows())).collect())
                .unwrap_or_default();
            println!(
                "v1 seq={} ts={} size={}x{} format={} planes={} data={}+{}",
                old.seq(),
                old.timestamp_ns(),
                old.width(),
                old.height(),
                old.pixel_format().0,
                planes.join(","),
                old.data_offset(),
                old.data_size()
            );
        }
        b"SHPK" => {
            let p = decode_packet(msg).map_err(|e| e.to_string())?;
            println!(
                "packet seq={} ts={} codec={} pts={} dts={} duration={} time_base={} key={} extradata={} size={}x{} \
                 bytes={} crc={:08x}",
                p.seq,
                p.timestamp_ns,
                p.codec,
                opt(p.pts),
                opt(p.dts),
                p.duration,
                ratio(p.time_base),
                u8::from(p.keyframe),
                hex(p.extradata),
                p.width,
                p.height,
                p.data.len(),
                crc32fast::hash(p.data)
            );
        }
        b"SHAU" => {
            let a = decode_audio(msg).map_err(|e| e.to_string())?;
            let mut h = crc32fast::Hasher::new();
            if a.planar {
                for c in 0..a.channels {
                    h.update(a.channel_bytes(c));
                }
            } else {
                h.update(a.channel_bytes(0));
            }
            println!(
                "audio seq={} ts={} rate={} format={} planar={} channels={} layout={} samples={} pts={} time_base={} \
                 bytes_per_sample={} crc={:08x}",
                a.seq,
                a.timestamp_ns,
                a.sample_rate,
                a.sample_format.0,
                u8::from(a.planar),
                a.channels,
                if a.channel_layout.is_empty() { "-" } else { a.channel_layout },
                a.samples,
                opt(a.pts),
                ratio(a.time_base),
                sample_bytes(a.sample_format).unwrap_or(0),
                h.finalize()
            );
        }
        _ => return Err(format!("unknown file identifier {ident:?}")),
    }
    Ok(())
}

fn main() {
    let mut status = 0;
    for path in std::env::args().skip(1) {
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error {path}: {e}");
                std::process::exit(2);
            }
        };
        if let Err(e) = inspect(&data) {
            println!("error {e}");
            status = 1;
        }
    }
    std::process::exit(status);
}
