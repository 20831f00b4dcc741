// SPDX-License-Identifier: MIT
// Rust state-board peer (the same command line as the C++ and Python ones in tests/test_interop_bcast.py).
//
//   shmchan-state writer NAME [--create] [--writes N] [--seconds S] [--interval-us U] [--go] [--hold]
//     Creates the board (a ChannelInfo of kind State whose numpy_descr is the interop counter
//     record, shmchan::interop::counter, so Python reads it as a structured numpy value) or opens
//     it, attaches the writer and prints "ready"; with --go waits for the line "go" on stdin. Then
//     publishes the counter record of k = its version, for k = 1, 2, ... until it has written at
//     least N values and S seconds have passed, the last with last=1, and prints
//     "done writes=W version=V seconds=S". With --hold, waits for "exit" before it goes.
//   shmchan-state reader NAME [--wait] [--timeout S]
//     Checks that the board holds counter records, prints "ready", then reads the board as fast as
//     it can (with --wait: sleeps in shmchan_state_wait until the version changes, then reads)
//     until it reads the final value. Every value must be consistent (all fields derived from one
//     counter), equal to its version, and versions never go back. Prints "done reads=R
//     versions=V nodata=K errors=E first=F last=L seconds=S" (V distinct versions seen, K reads
//     before the first publish). Exits 1 when E > 0.
mod common;

use shmchan::interop::counter;
use shmchan::schema::{encode_channel_info, ChannelInfo};
use shmchan::{fb, ErrorKind, State};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: shmchan-state writer NAME [--create] [--writes N] [--seconds S] [--interval-us U] [--go] [--hold]\n\
    \x20      shmchan-state reader NAME [--wait] [--timeout S]";

fn error(what: String, errors: &mut u64) {
    *errors += 1;
    if *errors <= 10 {
        eprintln!("{what}");
    }
}

fn writer(f: &common::Flags) {
    let writes: u64 = f.get("writes", 1000);
    let seconds = Duration::from_secs_f64(f.get("seconds", 0.0));
    let interval = Duration::from_micros(f.get("interval-us", 0));
    let st = if f.has("create") {
        let (slot_size, capacity, slot_align) = State::geometry(counter::SIZE as u64);
        let d = encode_channel_info(&ChannelInfo {
            kind: fb::ChannelKind::State.0,
            slot_size,
            capacity,
            slot_align,
            payload: None,
            dtype: fb::DType::Unknown,
            shape: None,
            metadata: vec![],
            numpy_descr: Some(counter::NUMPY_DESCR.into()),
        });
        State::create(&f.name, slot_size, Some(d)).unwrap_or_else(|e| common::die(&e))
    } else {
        State::open(&f.name, Some(Duration::from_secs(5))).unwrap_or_else(|e| common::die(&e))
    };
    {
        let mut w = st.writer().unwrap_or_else(|e| common::die(&e));
        println!("ready");
        if f.has("go") && !common::wait_for_go() {
            println!("error: stdin ended before \"go\"");
            std::process::exit(1);
        }
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            n += 1;
            let last = n >= writes && start.elapsed() >= seconds;
            let k = w.version() + 1;
            let v = w.write(&counter::encode(k, last)).unwrap_or_else(|e| common::die(&e));
            if v != k {
                println!("error: published version {v}, expected {k}");
                std::process::exit(1);
            }
            if last {
                println!("done writes={n} version={v} seconds={:.6}", start.elapsed().as_secs_f64());
                break;
            }
            if !interval.is_zero() {
                std::thread::sleep(interval);
            }
        }
    }
    if f.has("hold") {
        common::wait_for_exit();
    }
}

fn reader(f: &common::Flags) {
    let wait = f.has("wait");
    let timeout = f.timeout(60.0);
    let st = State::open(&f.name, Some(Duration::from_secs(5))).unwrap_or_else(|e| common::die(&e));
    let ci = st.channel_info().unwrap_or_else(|e| common::die(&e));
    let descr = ci.as_ref().and_then(|c| c.numpy_descr.clone());
    if st.max_size() != counter::SIZE as u64 || descr.as_deref() != Some(counter::NUMPY_DESCR) {
        println!(
            "error incompatible: the board holds {} bytes of numpy dtype {descr:?}; expected {} bytes of {:?}",
            st.max_size(),
            counter::SIZE,
            counter::NUMPY_DESCR
        );
        std::process::exit(3);
    }
    println!("ready");
    let mut buf = [0u8; counter::SIZE];
    let (mut reads, mut versions, mut nodata, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let (mut first, mut seen) = (0u64, 0u64);
    let t0 = Instant::now();
    loop {
        if t0.elapsed() > timeout {
            println!("error timeout: no final value within {timeout:?} (last version {seen})");
            std::process::exit(5);
        }
        if wait {
            match st.wait_for_change(seen, Some(Duration::from_millis(200))) {
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::Timeout => continue,
                Err(e) => common::die(&e),
            }
        }
        let (n, v) = match st.read(&mut buf) {
            Ok(r) => r,
            // the writer replaced the value faster than it could be copied (a loaded machine and a
            // writer in a tight loop): a live board's answer, not an error; look again
            Err(e) if e.kind == ErrorKind::Busy => {
                std::thread::yield_now();
                continue;
            }
            Err(e) => common::die(&e),
        };
        if v == 0 {
            nodata += 1;
            continue;
        }
        reads += 1;
        if v < seen {
            error(format!("version {v} after {seen}"), &mut errors);
        }
        let fin = match counter::decode(&buf[..n]) {
            Ok((k, fin)) => {
                if k != v {
                    error(format!("version {v} holds the value of {k}"), &mut errors);
                }
                fin
            }
            Err(why) => {
                error(format!("version {v}: {why}"), &mut errors);
                false
            }
        };
        if v != seen {
            versions += 1;
            if first == 0 {
                first = v;
            }
            seen = v;
        }
        if fin {
            break;
        }
    }
    println!(
        "done reads={reads} versions={versions} nodata={nodata} errors={errors} first={first} last={seen} seconds={:.6}",
        t0.elapsed().as_secs_f64()
    );
    drop(st);
    std::process::exit(if errors == 0 { 0 } else { 1 });
}

fn main() {
    let f = common::Flags::parse(USAGE, &["create", "hold", "go", "wait"], &["writes", "seconds", "interval-us", "timeout"]);
    match f.mode.as_str() {
        "writer" => writer(&f),
        "reader" => reader(&f),
        _ => f.usage(),
    }
}
