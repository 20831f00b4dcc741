// SPDX-License-Identifier: MIT
// Compiles the shmchan C core (../../csrc) into this crate, with the same flags as its own build.
use std::path::PathBuf;

fn main() {
    let csrc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../csrc");
    // The core's files: csrc/sources.list is the one list every build reads (a path per line,
    // '#' starts a comment).
    let list = csrc.join("sources.list");
    let text = std::fs::read_to_string(&list).expect("csrc/sources.list");
    let files: Vec<&str> =
        text.lines().flat_map(|line| line.split('#').next().unwrap_or("").split_whitespace()).collect();
    println!("cargo:rerun-if-changed={}", list.display());
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
    for f in &files {
        if f.ends_with(".c") {
            build.file(csrc.join(f));
        }
        println!("cargo:rerun-if-changed={}", csrc.join(f).display());
    }
    build.file("src/sizes.c");
    println!("cargo:rerun-if-changed=src/sizes.c");
    build.compile("shmchan_core");
}
