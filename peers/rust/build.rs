// SPDX-License-Identifier: MIT
// Compiles the shmchan C core (../../csrc) into this crate, with the same flags as its own build.
use std::path::PathBuf;

fn main() {
    let csrc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../csrc");
    // Every .c at the top of csrc/ is the core (its tests and fuzzers live in subdirectories).
    let mut sources: Vec<String> = std::fs::read_dir(&csrc)
        .expect("csrc/")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".c"))
        .collect();
    sources.sort();
    println!("cargo:rerun-if-changed={}", csrc.display());
    let mut build = cc::Build::new();
    build
        .std("c11")
        .define("_GNU_SOURCE", None)
        .define("SHMCHAN_PKG_VERSION", "\"rust-peer\"")
        .include(csrc.join("include"))
        .include(&csrc)
        .flag("-Wall")
        .flag("-Wextra")
        .warnings_into_errors(true)
        .opt_level(2);
    for s in &sources {
        build.file(csrc.join(s));
        println!("cargo:rerun-if-changed={}", csrc.join(s).display());
    }
    build.file("src/sizes.c");
    println!("cargo:rerun-if-changed=src/sizes.c");
    for h in ["include/shmchan.h", "layout.h", "atomic.h", "internal.h"] {
        println!("cargo:rerun-if-changed={}", csrc.join(h).display());
    }
    build.compile("shmchan_core");
}
