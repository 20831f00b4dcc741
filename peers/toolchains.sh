#!/bin/sh
# SPDX-License-Identifier: MIT
# Which native peers this machine can build: `toolchains.sh ok` prints the buildable ones (c rust go),
# `toolchains.sh report` prints one line saying which toolchain is missing, if any (make test prints
# it at the top and at the end of its run).
#   c     peers/c: g++ (C++17) and the zlib headers; the FlatBuffers headers come with the test extra
#   rust  peers/rust: cargo and rustc >= 1.77
#   go    peers/go: go >= 1.26 (go.mod; an older go would try to download a toolchain)
set -u

# "MAJOR.MINOR" of the first version-looking word on stdin, as one comparable number (1.77 -> 1077)
vernum() { sed -n 's/^[^0-9]*\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' | head -n 1 | { read -r a b && echo $((a * 1000 + b)); }; }

missing_c() {
    command -v "${CXX:-g++}" >/dev/null 2>&1 || { echo "g++ (C++17 compiler; Debian: g++)"; return; }
    command -v "${CC:-cc}" >/dev/null 2>&1 || { echo "cc (C compiler; Debian: gcc)"; return; }
    printf '#include <zlib.h>\n' | "${CXX:-g++}" -E -x c++ - >/dev/null 2>&1 || echo "the zlib headers (Debian: zlib1g-dev)"
}

missing_rust() {
    command -v cargo >/dev/null 2>&1 && command -v rustc >/dev/null 2>&1 || { echo "cargo (Rust >= 1.77, rustup)"; return; }
    v=$(rustc --version 2>/dev/null | vernum)
    [ "${v:-0}" -ge 1077 ] || echo "Rust >= 1.77 (found $(rustc --version 2>/dev/null))"
}

missing_go() {
    command -v go >/dev/null 2>&1 || { echo "go (>= 1.26)"; return; }
    v=$(GOTOOLCHAIN=local go version 2>/dev/null | sed 's/.* go\([0-9.]*\).*/\1/' | vernum)
    [ "${v:-0}" -ge 1026 ] || echo "go >= 1.26 (found $(GOTOOLCHAIN=local go version 2>/dev/null))"
}

case "${1:-report}" in
ok)
    ok=""
    for p in c rust go; do
        [ -z "$(missing_$p)" ] && ok="$ok $p"
    done
    echo $ok
    ;;
report)
    gone=""
    for p in c rust go; do
        m=$(missing_$p)
        case $p in c) name="C++ peer (peers/c)" ;; rust) name="Rust peer (peers/rust)" ;; go) name="Go peer (peers/go)" ;; esac
        [ -n "$m" ] && gone="$gone
    $name: missing $m"
    done
    if [ -z "$gone" ]; then
        echo "toolchains: g++, cargo and go found: the C++, Rust and Go peers are built and every cross-language test runs"
    else
        echo "toolchains: MISSING TOOLCHAIN, so these peers are not built and their cross-language tests skip:$gone"
    fi
    ;;
*)
    echo "usage: $0 ok|report" >&2
    exit 2
    ;;
esac
