"""The C API is written out three times: csrc/include/shmchan.h (the truth), shmchan/_cdefs.h (CFFI)
and peers/rust/src/ffi.rs (Rust). These tests compare the copies with the header, so none can drift:
every function, struct, enum and constant they declare must say what the header says."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "csrc" / "include" / "shmchan.h"
CDEFS = ROOT / "shmchan" / "_cdefs.h"
FFI_RS = ROOT / "peers" / "rust" / "src" / "ffi.rs"

# a base value, not an error code: no binding needs it
NOT_IN_CDEFS = {"SHMCHAN_EBASE"}


@dataclass
class Api:
    functions: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # name -> (ret, params)
    structs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # name -> [(field, type)]
    enums: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {member: value}
    defines: dict[str, str] = field(default_factory=dict)


def _ctype(text: str) -> str:
    """A C type in one spelling: single spaces, every '*' as its own token."""
    return " ".join(re.sub(r"\*", " * ", text).split())


def _decl(text: str) -> tuple[str, str]:
    """'const char *name' -> ('name', 'const char *'); arrays keep their size: 'char m[256]' -> ('m', 'char[256]')."""
    m = re.fullmatch(r"(.*?)(\w+)\s*(\[\s*\w+\s*\])?", " ".join(text.split()))
    assert m, text
    return m.group(2), _ctype(m.group(1)) + (re.sub(r"\s", "", m.group(3)) if m.group(3) else "")


def parse_c(path: Path) -> Api:
    """Functions, structs, enums and #defines of a C header in the style of shmchan.h (or its CFFI
    copy, where '...' stands for values and the rest of a struct)."""
    raw = path.read_text()
    api = Api()
    for name, value in re.findall(r"^#define\s+(SHMCHAN_\w+)[ \t]+(\S+)", raw, re.M):
        api.defines[name] = value
    text = re.sub(r"/\*.*?\*/", " ", raw, flags=re.S)
    text = re.sub(r"//[^\n]*|^#[^\n]*", " ", text, flags=re.M)
    for name, body in re.findall(r"\benum\s+(\w+)\s*\{(.*?)\}\s*;", text, re.S):
        members = [m.strip() for m in body.split(",") if m.strip()]
        api.enums[name] = dict((m.split("=", 1)[0].strip(), m.split("=", 1)[1].strip()) for m in members)
    for name, body in re.findall(r"\bstruct\s+(\w+)\s*\{(.*?)\}\s*;", text, re.S):
        fields: list[tuple[str, str]] = []
        for stmt in (s.strip() for s in body.split(";")):
            if not stmt or stmt == "...":
                continue
            first, *more = stmt.split(",")
            fname, ftype = _decl(first)
            fields.append((fname, ftype))
            base = re.sub(r"[\s\*]+$", "", ftype.split("[")[0]).replace(" *", "")
            for d in more:  # `uint16_t version_major, version_minor`
                m = re.fullmatch(r"\s*(\**)\s*(\w+)\s*", d)
                assert m, stmt
                fields.append((m.group(2), _ctype(base + " " + m.group(1))))
        api.structs[name] = fields
    text = re.sub(r"\b(?:enum|struct)\s+\w+\s*\{.*?\}\s*;", " ", text, flags=re.S)
    for ret, name, params in re.findall(r"([\w\s\*]+?)\b(shmchan_\w+)\s*\(([^)]*)\)\s*;", text):
        plist = [] if params.strip() in ("", "void") else [_decl(p)[1] for p in params.split(",")]
        api.functions[name] = (_ctype(ret.replace("typedef", "")), tuple(plist))
    return api


RUST_SCALARS = {"uint8_t": "u8", "uint16_t": "u16", "uint32_t": "u32", "uint64_t": "u64", "int32_t": "i32",
                "int64_t": "i64", "int": "c_int", "char": "c_char", "void": "c_void"}


def rust_type(c: str) -> str:
    """The Rust spelling of a C type of shmchan.h (raw pointers, std::os::raw scalars)."""
    m = re.fullmatch(r"(.*)\[(\d+)\]", c)
    if m:
        return f"[{rust_type(m.group(1))}; {m.group(2)}]"
    if c.endswith(" *"):
        inner = c[: -len(" *")]
        if inner.startswith("const "):
            return "*const " + rust_type(inner[len("const "):])
        return "*mut " + rust_type(inner)
    c = c.removeprefix("struct ")
    return RUST_SCALARS.get(c, c)


def parse_rust(path: Path) -> Api:
    """pub fns of the extern "C" blocks, #[repr(C)] structs and pub consts of ffi.rs."""
    text = re.sub(r"//[^\n]*", "", path.read_text())
    api = Api()
    for name, body in re.findall(r"#\[repr\(C\)\][^{]*?pub struct (\w+)\s*\{(.*?)\n\}", text, re.S):
        fields = re.findall(r"(?:pub\s+)?(\w+)\s*:\s*([^,]+),", body)
        api.structs[name] = [(f, " ".join(t.split())) for f, t in fields]
    for name, value in re.findall(r"pub const (\w+)\s*:\s*\w+\s*=\s*([^;]+);", text):
        api.defines[name] = value.strip()
    for block in re.findall(r'extern "C"\s*\{(.*?)\n\}', text, re.S):
        for name, params, ret in re.findall(r"pub fn (\w+)\s*\((.*?)\)\s*(?:->\s*([^;]+))?;", block, re.S):
            plist = [" ".join(p.split(":", 1)[1].split()) for p in params.split(",") if p.strip()]
            api.functions[name] = (" ".join(ret.split()) if ret else "", tuple(plist))
    return api


def _int(value: str) -> int:
    return int(value.rstrip("uUlL"), 0)


@pytest.fixture(scope="module")
def header() -> Api:
    api = parse_c(HEADER)
    # the parser found what the header declares (so a comparison below cannot pass by finding nothing)
    assert len(api.functions) > 50 and "shmchan_reserve" in api.functions
    assert api.functions["shmchan_reserve"] == ("int", ("shmchan_writer *", "uint64_t", "int64_t", "void * *",
                                                        "uint32_t *"))
    assert ("version_minor", "uint16_t") in api.structs["shmchan_info"]
    assert ("message", "char[256]") in api.structs["shmchan_diag"]
    assert api.enums["shmchan_kind"]["SHMCHAN_KIND_STATE"] == "3"
    assert api.defines["SHMCHAN_START_OLDEST"] == "1u"
    return api


def test_cdefs_declare_every_function_of_the_header_as_it_is(header: Api) -> None:
    """_cdefs.h declares every public function with the header's return and parameter types."""
    cdefs = parse_c(CDEFS)
    missing = sorted(set(header.functions) - set(cdefs.functions))
    assert not missing, f"shmchan/_cdefs.h lacks {missing}"
    wrong = {n: (cdefs.functions[n], header.functions[n]) for n in header.functions
             if cdefs.functions[n] != header.functions[n]}
    assert not wrong, f"_cdefs.h vs shmchan.h: {wrong}"


def test_cdefs_structs_enums_and_defines_match_the_header(header: Api) -> None:
    """Every public struct is in _cdefs.h with the header's fields, in order (CFFI's '...' may stand
    only for private `_` fields); every enum member and #define of the header is declared there."""
    cdefs = parse_c(CDEFS)
    for name, fields in header.structs.items():
        assert name in cdefs.structs, f"_cdefs.h lacks struct {name}"
        public = [f for f in fields if not f[0].startswith("_")]
        assert [f for f in cdefs.structs[name] if not f[0].startswith("_")] == public, name
        assert set(cdefs.structs[name]) <= set(fields), name
    for name, members in header.enums.items():
        assert name in cdefs.enums, f"_cdefs.h lacks enum {name}"
        assert set(cdefs.enums[name]) <= set(members), name
        assert set(members) - set(cdefs.enums[name]) <= NOT_IN_CDEFS, name
    lacking = sorted(d for d in header.defines if d not in cdefs.defines and d != "SHMCHAN_H")
    assert not lacking, f"_cdefs.h lacks {lacking}"


def test_rust_ffi_matches_the_header(header: Api) -> None:
    """Each function ffi.rs declares has the header's types (mapped to Rust); each #[repr(C)] struct
    has the header's fields in order; each constant has the header's value."""
    rust = parse_rust(FFI_RS)
    assert len(rust.functions) > 20 and len(rust.structs) >= 6
    helpers = (ROOT / "peers" / "rust" / "src" / "sizes.c").read_text()
    wrong = {}
    for name, (ret, params) in rust.functions.items():
        if name not in header.functions:
            assert re.search(rf"\b{name}\s*\(", helpers), f"ffi.rs declares {name}, which shmchan.h does not have"
            continue
        cret, cparams = header.functions[name]
        want = ("" if cret == "void" else rust_type(cret), tuple(rust_type(p) for p in cparams))
        if (ret, params) != want:
            wrong[name] = ((ret, params), want)
    assert not wrong, f"ffi.rs vs shmchan.h (Rust, expected): {wrong}"
    for name, fields in rust.structs.items():
        if fields == [("_private", "[u8; 0]")]:
            continue  # an opaque handle
        assert name in header.structs, f"ffi.rs declares struct {name}, which shmchan.h does not have"
        want_fields = [(f, rust_type(t)) for f, t in header.structs[name]]
        assert fields == want_fields, f"struct {name}: ffi.rs {fields} vs shmchan.h {want_fields}"
    assert {"shmchan_config", "shmchan_info", "shmchan_stats", "shmchan_msg", "shmchan_place_info"} <= set(rust.structs)
    values = {**{k: v for e in header.enums.values() for k, v in e.items()}, **header.defines}
    for name, value in rust.defines.items():
        assert name in values, f"ffi.rs constant {name} is not in shmchan.h"
        assert _int(value) == _int(values[name]), f"{name}: ffi.rs {value}, shmchan.h {values[name]}"


def test_the_comparison_catches_a_changed_parameter(tmp_path: Path, header: Api) -> None:
    """A copy whose declaration differs by one parameter type is told apart from the header."""
    changed = tmp_path / "cdefs.h"
    changed.write_text(CDEFS.read_text().replace("int shmchan_commit(shmchan_writer *w, uint64_t nbytes);",
                                                 "int shmchan_commit(shmchan_writer *w, uint32_t nbytes);"))
    assert parse_c(changed).functions["shmchan_commit"] != header.functions["shmchan_commit"]
    assert parse_c(CDEFS).functions["shmchan_commit"] == header.functions["shmchan_commit"]
    assert rust_type("const struct shmchan_config *") == "*const shmchan_config"
    assert rust_type("shmchan_channel * *") == "*mut *mut shmchan_channel"
