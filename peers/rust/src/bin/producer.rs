// SPDX-License-Identifier: MIT
// Rust producer: writes Frame messages (header + test-pattern pixels in place) to a shmchan channel.
// Prints "ready" once the channel is open, then "done frames=N crc=XXXXXXXX seconds=S fps=F".
mod common;

use shmchan::frame::FrameWriter;
use shmchan::pattern;
use std::time::{Duration, Instant};

fn main() {
    let o = common::parse("shmchan-producer");
    let mut fw = FrameWriter::new();
    let p = fw.placement(o.width, o.height, o.format).unwrap_or_else(|e| common::die(&e));
    let ch = common::channel(&o, p.message_size as u64);
    println!("ready");
    let frames = o.frames.unwrap_or(100);
    let base = pattern::base(p.data_size);
    let mut crc = crc32fast::Hasher::new();
    {
        let mut w = ch.writer().unwrap_or_else(|e| common::die(&e));
        if let Some(us) = o.spin_us {
            w.set_spin(Duration::from_micros(us));
        }
        let start = Instant::now();
        for seq in 0..frames {
            let mut loan = w.reserve(p.message_size, o.timeout).unwrap_or_else(|e| common::die(&e));
            let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
            let px = fw.write(loan.bytes_mut(), &p, seq, ts, o.width, o.height, o.format).unwrap_or_else(|e| common::die(&e));
            pattern::fill(px, &base, seq);
            if o.verify == "crc" {
                crc.update(px);
            }
            loan.commit().unwrap_or_else(|e| common::die(&e));
        }
        let secs = start.elapsed().as_secs_f64();
        println!("done frames={frames} crc={:08x} seconds={secs:.6} fps={:.1}", crc.clone().finalize(), frames as f64 / secs.max(1e-9));
    }
    if o.hold {
        common::wait_for_exit();
    }
}
