"""Static checks on the C core: shared memory is touched only through the atomic wrappers; one list
of sources."""

from __future__ import annotations

import re
from pathlib import Path

CSRC = Path(__file__).resolve().parent.parent / "csrc"


def _shared_fields() -> list[str]:
    """Names of the _Atomic fields of struct shmchan_header, read from layout.h."""
    text = (CSRC / "layout.h").read_text()
    body = text[text.index("struct shmchan_header {") : text.index("};", text.index("struct shmchan_header {"))]
    return re.findall(r"_Atomic\s+uint\d+_t\s+(\w+);", body)


def _code(path: Path) -> str:
    """Source without comments and string literals."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def test_layout_declares_the_shared_fields() -> None:
    """The lint below has something to check: layout.h declares the ring's atomic fields."""
    fields = _shared_fields()
    assert {"magic", "head", "tail", "head_wake", "tail_wake", "writer_state"} <= set(fields)


def test_shared_fields_are_accessed_only_through_atomic_helpers() -> None:
    """Every access to a header field or the length table passes its address to a helper in atomic.h."""
    fields = "|".join(_shared_fields())
    # the header is reached only as `h` or through a `->hdr` member (checked below), the length
    # table only as `->lens`
    access = re.compile(rf"(&?)\s*\b(?:\w+->)*(?:h|hdr)->(?:{fields})\b|(&?)\s*\b(?:\w+->)*lens\[")
    offenders = []
    for path in sorted(CSRC.glob("*.c")):
        for lineno, line in enumerate(_code(path).splitlines(), 1):
            for m in access.finditer(line):
                if not (m.group(1) or m.group(2)):
                    offenders.append(f"{path.name}:{lineno}: {line.strip()}")
    assert not offenders, "plain access to shared memory:\n" + "\n".join(offenders)


def test_header_pointers_are_named_h() -> None:
    """Pointers to the shared header are called `h` (or are the `hdr` member), so the lint above sees them."""
    decl = re.compile(r"struct shmchan_header\s*\*\s*(\w+)")
    names = {m.group(1) for p in sorted(CSRC.glob("*.[ch]")) for m in decl.finditer(_code(p))}
    assert names and names <= {"h", "hdr"}, names


def test_atomic_helpers_are_the_only_users_of_stdatomic_operations() -> None:
    """atomic_load/atomic_store/fences appear only in atomic.h, where each is named for its ordering."""
    pattern = re.compile(r"\batomic_(load|store|thread_fence|fetch_\w+|exchange\w*|compare_exchange\w*)")
    offenders = [
        f"{p.name}:{n}"
        for p in sorted(CSRC.glob("*.[ch]"))
        if p.name != "atomic.h"
        for n, line in enumerate(_code(p).splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


def test_every_acquire_and_release_names_its_barrier() -> None:
    """Each acquire/release call site has a lettered barrier comment within the two lines above it."""
    call = re.compile(r"shmchan_(load_acquire|store_release)\d+\(")
    missing = []
    for path in sorted(CSRC.glob("*.c")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if call.search(line) and not line.lstrip().startswith(("static inline", "return atomic")):
                context = " ".join(lines[max(0, i - 2) : i + 1])
                if not re.search(r"\([A-Z]\d?\)", context):
                    missing.append(f"{path.name}:{i + 1}: {line.strip()}")
    assert not missing, "barriers without a lettered comment:\n" + "\n".join(missing)


# ---- one list of sources ----


def _listed() -> list[str]:
    """csrc/sources.list: the core's files, relative to csrc/ ('#' starts a comment)."""
    lines = (CSRC / "sources.list").read_text().splitlines()
    return [w for line in lines for w in line.split("#", 1)[0].split()]


def _core_sources() -> list[str]:
    return [f for f in _listed() if f.endswith(".c")]


def test_every_core_source_is_in_the_one_list() -> None:
    """Every .c file at the top of csrc/ (its tests and fuzzers live below) is in sources.list, and
    every listed file exists, once."""
    listed = _listed()
    assert len(listed) == len(set(listed)), "a file is listed twice"
    missing = sorted({p.name for p in CSRC.glob("*.c")} - set(listed))
    assert not missing, f"not in csrc/sources.list (no build would compile them): {missing}"
    absent = [f for f in listed if not (CSRC / f).is_file()]
    assert not absent, f"csrc/sources.list names files that do not exist: {absent}"
    assert {"include/shmchan.h", "layout.h", "atomic.h", "internal.h"} <= set(listed)
