// SPDX-License-Identifier: MIT
// Rust consumer: receives Frame messages, decodes them in place and verifies them (crc32 of the
// pixels, or one byte per 4 KiB page of the test pattern; `--verify frames` prints a line per frame
// with the crc32 of its pixel rows and its media fields). Prints "ready", then
// "done frames=N crc=XXXXXXXX seconds=S fps=F errors=E".
mod common;

use shmchan::frame::{decode_frame, frame_line, FrameWriter};
use shmchan::{pattern, ErrorKind};
use std::time::{Duration, Instant};

fn main() {
    let o = common::parse("shmchan-consumer");
    let mut fw = FrameWriter::new();
    let p = fw.placement(o.width, o.height, o.format).unwrap_or_else(|e| common::die(&e));
    let ch = common::channel(&o, p.message_size as u64);
    let mut r = ch.reader().unwrap_or_else(|e| common::die(&e));
    if let Some(us) = o.spin_us {
        r.set_spin(Duration::from_micros(us));
    }
    println!("ready");
    let mut base: Vec<u8> = vec![];
    let mut crc = crc32fast::Hasher::new();
    let (mut n, mut errors) = (0u64, 0u64);
    let mut start: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        if o.frames == Some(n) {
            break;
        }
        let m = match r.recv(o.timeout) {
            Ok(m) => m,
            Err(e) if e.kind == ErrorKind::Ended => break,
            Err(e) => common::die(&e),
        };
        start.get_or_insert_with(Instant::now);
        let f = decode_frame(m.bytes()).unwrap_or_else(|e| common::die(&e));
        if f.seq != n {
            errors += 1;
            eprintln!("frame {n}: seq {}", f.seq);
        }
        match o.verify.as_str() {
            "crc" => crc.update(f.pixels),
            "frames" => {
                crc.update(f.pixels);
                println!("{}", frame_line(m.bytes(), &f));
            }
            "stamp" => {
                if base.len() != f.pixels.len() {
                    base = pattern::base(f.pixels.len());
                }
                let k = (f.seq.wrapping_mul(13)) as u8;
                let bad = (0..f.pixels.len()).step_by(4096).any(|i| f.pixels[i] != base[i].wrapping_add(k));
                errors += u64::from(bad);
            }
            _ => {}
        }
        n += 1;
        last = Instant::now();
    }
    let secs = start.map(|s| (last - s).as_secs_f64()).unwrap_or(0.0);
    let fps = if n > 1 { (n - 1) as f64 / secs.max(1e-9) } else { 0.0 };
    println!("done frames={n} crc={:08x} seconds={secs:.6} fps={fps:.1} errors={errors}", crc.finalize());
    drop(r);
    if o.hold {
        common::wait_for_exit();
    }
    drop(ch); // the creator removes the name here (process::exit would skip it)
    std::process::exit(if errors == 0 { 0 } else { 1 });
}
