// SPDX-License-Identifier: MIT
// Command-line handling shared by the producer and consumer binaries.
#![allow(dead_code)]

use shmchan::fb;
use shmchan::schema::{build_channel_info, PayloadSchema};
use shmchan::{Channel, Config, Error, ErrorKind};
use std::time::Duration;

pub struct Opts {
    pub name: String,
    pub create: bool,
    pub frames: Option<u64>,
    pub width: u32,
    pub height: u32,
    pub format: fb::PixelFormat,
    pub capacity: u32,
    pub schema: String,
    pub slot_size: Option<u64>,
    pub shape: Option<Vec<i64>>,
    pub dtype: fb::DType,
    pub meta: Vec<(String, String)>,
    pub verify: String,
    pub hold: bool,
    pub timeout: Option<Duration>,
    pub spin_us: Option<u64>,
}

pub fn usage(prog: &str) -> ! {
    eprintln!(
        "usage: {prog} NAME [--create] [--frames N] [--width W] [--height H] [--format RGB24|BGR24|GRAY8|RGBA32|BGRA32|NV12|I420]\n\
         \x20   [--capacity C] [--schema frame|frame_next|frame_incompatible|none] [--slot-size BYTES] [--shape A,B,C]\n\
         \x20   [--dtype uint8] [--meta KEY=VALUE]... [--verify crc|stamp|none] [--hold] [--timeout SECONDS] [--spin-us N]"
    );
    std::process::exit(2)
}

pub fn parse(prog: &str) -> Opts {
    let mut a = std::env::args().skip(1);
    let name = a.next().unwrap_or_else(|| usage(prog));
    let mut o = Opts {
        name,
        create: false,
        frames: None,
        width: 1920,
        height: 1080,
        format: fb::PixelFormat::RGB24,
        capacity: 8,
        schema: "frame".into(),
        slot_size: None,
        shape: None,
        dtype: fb::DType::Unknown,
        meta: vec![],
        verify: "crc".into(),
        hold: false,
        timeout: None,
        spin_us: None,
    };
    while let Some(k) = a.next() {
        let mut v = || a.next().unwrap_or_else(|| usage(prog));
        match k.as_str() {
            "--create" => o.create = true,
            "--hold" => o.hold = true,
            "--frames" => o.frames = Some(v().parse().unwrap_or_else(|_| usage(prog))),
            "--width" => o.width = v().parse().unwrap_or_else(|_| usage(prog)),
            "--height" => o.height = v().parse().unwrap_or_else(|_| usage(prog)),
            "--capacity" => o.capacity = v().parse().unwrap_or_else(|_| usage(prog)),
            "--slot-size" => o.slot_size = Some(v().parse().unwrap_or_else(|_| usage(prog))),
            "--spin-us" => o.spin_us = Some(v().parse().unwrap_or_else(|_| usage(prog))),
            "--timeout" => o.timeout = Some(Duration::from_secs_f64(v().parse().unwrap_or_else(|_| usage(prog)))),
            "--schema" => o.schema = v(),
            "--verify" => o.verify = v(),
            "--format" => {
                let f = v();
                o.format = fb::PixelFormat::ENUM_VALUES
                    .iter()
                    .copied()
                    .find(|p| p.variant_name() == Some(f.as_str()))
                    .unwrap_or_else(|| usage(prog));
            }
            "--dtype" => {
                o.dtype = match v().as_str() {
                    "uint8" => fb::DType::UInt8,
                    "float32" => fb::DType::Float32,
                    _ => usage(prog),
                }
            }
            "--shape" => o.shape = Some(v().split(',').map(|d| d.parse().unwrap_or_else(|_| usage(prog))).collect()),
            "--meta" => {
                let kv = v();
                let (k2, v2) = kv.split_once('=').unwrap_or_else(|| usage(prog));
                o.meta.push((k2.into(), v2.into()));
            }
            _ => usage(prog),
        }
    }
    o
}

pub fn expected_schema(o: &Opts) -> Option<PayloadSchema> {
    if o.schema == "none" {
        return None;
    }
    Some(PayloadSchema::builtin(&o.schema).unwrap_or_else(|| {
        eprintln!("unknown schema {:?}", o.schema);
        std::process::exit(2)
    }))
}

pub fn die(e: &Error) -> ! {
    let (tag, rc) = match e.kind {
        ErrorKind::Incompatible => ("incompatible", 3),
        ErrorKind::PeerDead => ("peer-dead", 4),
        ErrorKind::Timeout => ("timeout", 5),
        _ => ("error", 1),
    };
    println!("error {tag}: {e}");
    eprintln!("{tag}: {e}");
    std::process::exit(rc)
}

/// Creates (with a ChannelInfo descriptor) or opens (checking the schema) the channel.
pub fn channel(o: &Opts, message_size: u64) -> Channel {
    let schema = expected_schema(o);
    if o.create {
        let slot_size = o.slot_size.unwrap_or(message_size);
        // page-aligned slots, stated in the header too: with slot_align 0 the core picks 64 for
        // slots under 4096 bytes, and the descriptor would disagree with the header
        let page = 4096;
        let d = build_channel_info(slot_size, o.capacity, page, schema.as_ref(), o.dtype, o.shape.as_deref(), &o.meta);
        let cfg = Config { slot_size, capacity: o.capacity, slot_align: page, descriptor: Some(d), ..Default::default() };
        Channel::create(&o.name, &cfg).unwrap_or_else(|e| die(&e))
    } else {
        let ch = Channel::open(&o.name, Some(Duration::from_secs(5))).unwrap_or_else(|e| die(&e));
        if let Some(s) = &schema {
            // a descriptor that is no ChannelInfo is no usable schema: incompatible (protocol R47)
            ch.check_schema(s).unwrap_or_else(|mut e| {
                if e.kind == ErrorKind::Decode {
                    e.kind = ErrorKind::Incompatible;
                }
                die(&e)
            });
        }
        ch
    }
}

pub fn wait_for_exit() {
    let mut line = String::new();
    loop {
        line.clear();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim() == "exit" => return,
            Ok(_) => {}
        }
    }
}

/// The command line of the broadcast and state peers: `MODE NAME [--switch] [--key VALUE]...`.
pub struct Flags {
    pub mode: String,
    pub name: String,
    values: std::collections::HashMap<String, String>,
    switches: std::collections::HashSet<String>,
    usage: &'static str,
}

impl Flags {
    /// Parses the process's arguments; `switches` take no value, `valued` take one.
    pub fn parse(usage: &'static str, switches: &[&str], valued: &[&str]) -> Flags {
        let bad = || -> ! {
            eprintln!("{usage}");
            std::process::exit(2)
        };
        let mut a = std::env::args().skip(1);
        let mode = a.next().unwrap_or_else(|| bad());
        let name = a.next().unwrap_or_else(|| bad());
        let mut f = Flags { mode, name, values: Default::default(), switches: Default::default(), usage };
        while let Some(k) = a.next() {
            let key = k.strip_prefix("--").unwrap_or_else(|| bad());
            if switches.contains(&key) {
                f.switches.insert(key.into());
            } else if valued.contains(&key) {
                let v = a.next().unwrap_or_else(|| bad());
                f.values.insert(key.into(), v);
            } else {
                bad()
            }
        }
        f
    }

    pub fn has(&self, key: &str) -> bool {
        self.switches.contains(key)
    }

    /// The value of `--key`, parsed, or `default`.
    pub fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        match self.values.get(key) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("bad value {v:?} for --{key}\n{}", self.usage);
                std::process::exit(2)
            }),
        }
    }

    pub fn text(&self, key: &str, default: &str) -> String {
        self.values.get(key).cloned().unwrap_or_else(|| default.into())
    }

    /// `--timeout SECONDS` (default `default_s`) as a Duration.
    pub fn timeout(&self, default_s: f64) -> Duration {
        Duration::from_secs_f64(self.get("timeout", default_s))
    }

    pub fn usage(&self) -> ! {
        eprintln!("{}", self.usage);
        std::process::exit(2)
    }
}

/// Waits for the line "go" on stdin (a test's signal to start); false if stdin ends first.
pub fn wait_for_go() -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line.trim() == "go" => return true,
            Ok(_) => {}
        }
    }
}
