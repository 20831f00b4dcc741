// SPDX-License-Identifier: MIT
//! shmchan-peer: the Rust peers behind the one command of the conformance contract
//! (docs/conformance.md). `open NAME [--timeout S]` is answered here, through the crate; the other
//! roles run the peer programs built beside it (`produce` -> shmchan-producer, `consume` ->
//! shmchan-consumer, `bcast` -> shmchan-bcast, `state` -> shmchan-state).
use std::os::unix::process::CommandExt;
use std::process::{exit, Command};
use std::time::Duration;

use shmchan::{code, Channel, ErrorKind};

fn usage() -> ! {
    eprintln!("usage: shmchan-peer produce|consume|bcast|state ARGS... | open NAME [--timeout S]");
    exit(2)
}

fn open_verdict(name: &str, timeout: f64) -> i32 {
    match Channel::open(name, Some(Duration::from_secs_f64(timeout))) {
        Ok(ch) => {
            let info = ch.info();
            let kind = match ch.kind() {
                shmchan::Kind::Spsc => "spsc",
                shmchan::Kind::Broadcast => "broadcast",
                shmchan::Kind::State => "state",
            };
            println!("ok kind={kind} slot_size={} capacity={}", info.slot_size, info.capacity);
            0
        }
        Err(e) => {
            let (tag, rc) = match (e.kind, -e.code) {
                (_, code::EBADMAGIC | code::EVERSION | code::ENOTINIT | code::ENOTREG) => ("incompatible", 3),
                (_, code::ECORRUPT) => ("corrupt", 6),
                (_, 1 | 13) => ("permission", 7), // EPERM, EACCES
                (_, 16) => ("busy", 8),           // EBUSY
                (ErrorKind::NotFound, _) | (_, 2) => ("not-found", 9),
                _ => ("error", 1),
            };
            println!("error {tag}: {}", e.message);
            rc
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        usage();
    }
    if args[1] == "open" {
        let mut timeout = 0.5;
        let mut i = 3;
        while i < args.len() {
            match (args[i].as_str(), args.get(i + 1)) {
                ("--timeout", Some(v)) => timeout = v.parse().unwrap_or_else(|_| usage()),
                _ => usage(),
            }
            i += 2;
        }
        exit(open_verdict(&args[2], timeout));
    }
    let program = match args[1].as_str() {
        "produce" => "shmchan-producer",
        "consume" => "shmchan-consumer",
        "bcast" => "shmchan-bcast",
        "state" => "shmchan-state",
        _ => usage(),
    };
    let me = std::env::current_exe().unwrap_or_else(|_| usage());
    let path = me.with_file_name(program);
    let err = Command::new(&path).args(&args[2..]).exec();
    eprintln!("{}: {err}", path.display());
    exit(1)
}
