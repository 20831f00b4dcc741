// SPDX-License-Identifier: MIT
// Rust broadcast peer (the same command line as the C++ and Python ones in tests/test_interop_bcast.py).
//
//   shmchan-bcast writer NAME [--create] [--slot-size B] [--capacity C] [--max-readers R]
//       [--policy block|overwrite] [--messages N] [--wait-readers K] [--interval-us U] [--timeout S] [--hold]
//     Creates (ChannelInfo of kind Broadcast) or opens the channel, attaches the writer, prints
//     "ready", waits until K readers are attached, writes N messages of the interop pattern
//     (shmchan::interop::message) and prints "done messages=N crc=XXXXXXXX seconds=S"; then closes
//     the writer (readers see the end) and, with --hold, waits for "exit" on stdin.
//   shmchan-bcast reader NAME [--start oldest|latest] [--policy block|overwrite] [--delay-us U] [--timeout S]
//     Attaches a reader, prints "ready position=P", and reads until the writer closes, checking
//     every message (word by word) and the accounting of lost messages. With --delay-us it holds
//     each message that long before checking it in place (then asks shmchan_check whether it is
//     intact), and every 4th message is copied out instead (shmchan_recv, never torn). Prints
//     "done messages=M lost=L stale=S torn=T errors=E first=F last=P start=A end=B crc=XXXXXXXX
//     seconds=S": M intact messages, L lost (Reader::lost), S rewritten while held, T of those
//     caught torn by the pattern check, E errors (a bad message claimed intact, a wrong order, or
//     accounting that does not add up). Exits 1 when E > 0.
mod common;

use shmchan::interop::message;
use shmchan::schema::{encode_channel_info, ChannelInfo};
use shmchan::{fb, Broadcast, BroadcastConfig, ErrorKind, Policy, Start};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: shmchan-bcast writer NAME [--create] [--slot-size B] [--capacity C] [--max-readers R]\n\
    \x20   [--policy block|overwrite] [--messages N] [--wait-readers K] [--interval-us U] [--timeout S] [--hold]\n\
    \x20      shmchan-bcast reader NAME [--start oldest|latest] [--policy block|overwrite] [--delay-us U] [--timeout S]";

fn policy(f: &common::Flags) -> Option<Policy> {
    match f.text("policy", "").as_str() {
        "" => None,
        "block" => Some(Policy::Block),
        "overwrite" => Some(Policy::Overwrite),
        _ => f.usage(),
    }
}

fn writer(f: &common::Flags) {
    let slot_size: u64 = f.get("slot-size", 512);
    let capacity: u32 = f.get("capacity", 8);
    let n: u64 = f.get("messages", 1000);
    let want_readers: usize = f.get("wait-readers", 0);
    let interval = Duration::from_micros(f.get("interval-us", 0));
    let timeout = f.timeout(60.0);
    let b = if f.has("create") {
        let pol = policy(f).unwrap_or(Policy::Block);
        let d = encode_channel_info(&ChannelInfo {
            kind: fb::ChannelKind::Broadcast.0,
            slot_size,
            capacity,
            slot_align: 4096,
            payload: None,
            dtype: fb::DType::Unknown,
            shape: None,
            metadata: vec![("pattern".into(), "interop-words".into())],
            numpy_descr: None,
        });
        let cfg = BroadcastConfig {
            slot_size,
            capacity,
            max_readers: f.get("max-readers", 8),
            policy: pol,
            slot_align: 4096, // as the descriptor says (protocol R48)
            descriptor: Some(d),
            ..Default::default()
        };
        Broadcast::create(&f.name, &cfg).unwrap_or_else(|e| common::die(&e))
    } else {
        Broadcast::open(&f.name, Some(Duration::from_secs(5))).unwrap_or_else(|e| common::die(&e))
    };
    let slot_size = b.info().slot_size;
    {
        let mut w = b.writer().unwrap_or_else(|e| common::die(&e));
        println!("ready");
        let start = Instant::now();
        while b.attached_readers() < want_readers {
            if start.elapsed() > timeout {
                println!("error timeout: {} of {want_readers} readers attached", b.attached_readers());
                std::process::exit(5);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut crc = crc32fast::Hasher::new();
        let start = Instant::now();
        for seq in 0..n {
            let mut loan = w.reserve(message::len(seq, slot_size), Some(timeout)).unwrap_or_else(|e| common::die(&e));
            message::fill(loan.bytes_mut(), seq);
            crc.update(loan.bytes_mut());
            loan.commit().unwrap_or_else(|e| common::die(&e));
            if !interval.is_zero() {
                std::thread::sleep(interval);
            }
        }
        println!("done messages={n} crc={:08x} seconds={:.6}", crc.finalize(), start.elapsed().as_secs_f64());
    } // the writer closes here: readers see the end of the stream
    if f.has("hold") {
        common::wait_for_exit();
    }
}

/// Counts an error; the first ten are described on stderr.
fn error(what: String, errors: &mut u64) {
    *errors += 1;
    if *errors <= 10 {
        eprintln!("{what}");
    }
}

fn reader(f: &common::Flags) {
    let start_at = match f.text("start", "oldest").as_str() {
        "oldest" => Start::Oldest,
        "latest" => Start::Latest,
        _ => f.usage(),
    };
    let delay = Duration::from_micros(f.get("delay-us", 0));
    let timeout = f.timeout(60.0);
    let b = Broadcast::open(&f.name, Some(Duration::from_secs(5))).unwrap_or_else(|e| common::die(&e));
    if let Some(p) = policy(f) {
        if b.policy() != p {
            println!("error incompatible: the channel's policy is {:?}, expected {p:?}", b.policy());
            std::process::exit(3);
        }
    }
    let slot_size = b.info().slot_size;
    let mut r = b.reader(start_at).unwrap_or_else(|e| common::die(&e));
    let start_pos = r.position();
    println!("ready position={start_pos}");
    let mut buf = vec![0u8; slot_size as usize];
    let mut crc = crc32fast::Hasher::new();
    let (mut delivered, mut stale, mut torn, mut errors, mut accounted_lost) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first, mut last): (Option<u64>, Option<u64>) = (None, None);
    let mut prev_taken: Option<u64> = None; // position of the previous message taken in place
    let t0 = Instant::now();
    for i in 0u64.. {
        let copy = !delay.is_zero() && i % 4 == 3;
        if copy {
            let before = r.lost();
            let n = match r.recv_copy(&mut buf, Some(timeout)) {
                Ok(n) => n,
                Err(e) if e.kind == ErrorKind::Ended => break,
                Err(e) => common::die(&e),
            };
            accounted_lost += r.lost() - before;
            prev_taken = None; // positions it skipped internally are not known here
            match message::verify(&buf[..n], slot_size) {
                Ok(seq) => {
                    if last.is_some_and(|l| seq <= l) {
                        error(format!("message {seq} after {}", last.unwrap_or(0)), &mut errors);
                    }
                    first.get_or_insert(seq);
                    last = Some(seq);
                    delivered += 1;
                    crc.update(&buf[..n]);
                }
                Err(why) => error(format!("copied message: {why}"), &mut errors),
            }
            std::thread::sleep(delay);
            continue;
        }
        let m = match r.recv(Some(timeout)) {
            Ok(m) => m,
            Err(e) if e.kind == ErrorKind::Ended => break,
            Err(e) => common::die(&e),
        };
        let pos = m.seq();
        accounted_lost += u64::from(m.lost());
        if let Some(p) = prev_taken {
            if pos != p + 1 + u64::from(m.lost()) {
                error(format!("message {pos} (lost {}) after message {p}", m.lost()), &mut errors);
            }
        }
        prev_taken = Some(pos);
        if !delay.is_zero() {
            std::thread::sleep(delay); // hold it: a lapping writer may rewrite it now
        }
        let verdict = message::verify(m.bytes(), slot_size);
        let mut next_crc = crc.clone();
        next_crc.update(m.bytes());
        let intact = m.is_intact();
        match (&verdict, intact) {
            (Err(_), false) => torn += 1, // torn, and the API said so
            (Err(why), true) => error(format!("message {pos} claimed intact: {why}"), &mut errors),
            (Ok(seq), true) if *seq != pos => error(format!("message at position {pos} holds {seq}"), &mut errors),
            _ => {}
        }
        match m.release() {
            Ok(()) if intact => {
                if last.is_some_and(|l| pos <= l) {
                    error(format!("message {pos} after {}", last.unwrap_or(0)), &mut errors);
                }
                first.get_or_insert(pos);
                last = Some(pos);
                delivered += 1;
                crc = next_crc;
            }
            Ok(()) => error(format!("message {pos}: check said lapped, release said intact"), &mut errors),
            Err(e) if e.kind == ErrorKind::Lapped => {
                stale += 1;
                accounted_lost += 1;
            }
            Err(e) => common::die(&e),
        }
    }
    let end = r.position();
    let lost = r.lost();
    if accounted_lost != lost {
        error(format!("the messages' lost counts add up to {accounted_lost}, the reader's to {lost}"), &mut errors);
    }
    if delivered + lost != end - start_pos {
        error(format!("{delivered} delivered + {lost} lost != positions {start_pos}..{end}"), &mut errors);
    }
    let opt = |v: Option<u64>| v.map_or("none".to_string(), |x| x.to_string());
    println!(
        "done messages={delivered} lost={lost} stale={stale} torn={torn} errors={errors} first={} last={} start={start_pos} end={end} crc={:08x} seconds={:.6}",
        opt(first),
        opt(last),
        crc.finalize(),
        t0.elapsed().as_secs_f64()
    );
    drop(r);
    drop(b);
    std::process::exit(if errors == 0 { 0 } else { 1 });
}

fn main() {
    let f = common::Flags::parse(
        USAGE,
        &["create", "hold"],
        &[
            "slot-size",
            "capacity",
            "max-readers",
            "policy",
            "messages",
            "wait-readers",
            "interval-us",
            "timeout",
            "start",
            "delay-us",
        ],
    );
    match f.mode.as_str() {
        "writer" => writer(&f),
        "reader" => reader(&f),
        _ => f.usage(),
    }
}
