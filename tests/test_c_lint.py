"""Static checks on the C core: shared memory is touched only through the atomic wrappers; one list
of sources; a file-level call graph without cycles in which only the dispatch file reaches more than
one kind; one wait loop; a barrier table that points at the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
DISPATCH = "channel.c"  # the one file that names every kind


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


# ---- the file-level call graph, from the symbols of the object files ----


@pytest.fixture(scope="module")
def symbols(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[set[str], set[str]]]:
    """For each core source: (global symbols it defines, symbols it uses), from `nm` of its object."""
    cc = shutil.which("cc") or shutil.which("gcc")
    nm = shutil.which("nm")
    if cc is None or nm is None:
        pytest.skip("needs a C compiler and nm")
    out = tmp_path_factory.mktemp("callgraph")
    table: dict[str, tuple[set[str], set[str]]] = {}
    for src in _core_sources():
        obj = out / (Path(src).stem + ".o")
        subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", "-O0", f"-I{CSRC / 'include'}", f"-I{CSRC}", "-c",
                        str(CSRC / src), "-o", str(obj)], check=True, capture_output=True, timeout=120)
        defined: set[str] = set()
        used: set[str] = set()
        for line in subprocess.run([nm, "-P", str(obj)], check=True, capture_output=True, text=True,
                                   timeout=60).stdout.splitlines():
            name, kind = line.split()[:2]
            if kind == "U":
                used.add(name)
            elif kind.isupper():
                defined.add(name)
        table[src] = (defined, used)
    return table


def _graph(symbols: dict[str, tuple[set[str], set[str]]]) -> dict[str, set[str]]:
    """File -> the other core files whose symbols (functions or data) it uses."""
    owner = {sym: f for f, (defined, _) in symbols.items() for sym in defined}
    return {f: {owner[s] for s in used if s in owner} - {f} for f, (_, used) in symbols.items()}


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Yields a cycle (as a path of files) for every back edge a depth-first walk finds."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def walk(f: str) -> Iterator[list[str]]:
        state[f] = 1
        path.append(f)
        for nxt in sorted(graph[f]):
            if state.get(nxt) == 1:
                yield [*path[path.index(nxt):], nxt]
            elif nxt not in state:
                yield from walk(nxt)
        path.pop()
        state[f] = 2

    for f in sorted(graph):
        if f not in state:
            yield from walk(f)


def _kind_files(symbols: dict[str, tuple[set[str], set[str]]]) -> set[str]:
    """The files of the kinds: each defines a table of operations (shmchan_<kind>_ops)."""
    return {f for f, (defined, _) in symbols.items() if any(re.fullmatch(r"shmchan_\w+_ops", s) for s in defined)}


def test_cycle_finder_finds_a_cycle() -> None:
    """The check below can fail: a three-file loop is reported, a tree is not."""
    assert list(_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}})) == [["a", "b", "c", "a"]]
    assert not list(_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}))


def test_core_call_graph_has_no_cycle(symbols: dict[str, tuple[set[str], set[str]]]) -> None:
    """No file of the core calls (or reads the data of) a file that, directly or not, calls it back."""
    graph = _graph(symbols)
    assert graph[DISPATCH], "the call graph is empty: nm found no references"
    cycles = [" -> ".join(c) for c in _cycles(graph)]
    assert not cycles, "cycles in the file-level call graph of csrc/:\n" + "\n".join(cycles)


def test_only_the_dispatch_file_reaches_more_than_one_kind(symbols: dict[str, tuple[set[str], set[str]]]) -> None:
    """Three kinds, one file each; no file but the dispatch file refers, directly or through others, to
    more than one of them (a kind file to none but itself), and the dispatch file refers to all."""
    graph = _graph(symbols)
    kinds = _kind_files(symbols)
    assert kinds == {"spsc.c", "bcast.c", "board.c"}, kinds
    assert _reach(graph, DISPATCH) >= kinds
    offenders = {}
    for f in graph:
        if f == DISPATCH:
            continue
        reached = (_reach(graph, f) | {f}) & kinds
        if len(reached) > 1:
            offenders[f] = sorted(reached)
    assert not offenders, f"files that reach more than one kind: {offenders}"


def test_only_the_dispatch_file_and_the_byte_map_name_the_kinds() -> None:
    """SHMCHAN_KIND_* appears only in the dispatch file and in validate.c, whose per-kind geometry
    rules are the byte map's (docs/protocol.md, "Validation on open") and call no kind's code."""
    naming = sorted(f for f in _core_sources() if re.search(r"\bSHMCHAN_KIND_\w+", _code(CSRC / f)))
    assert naming == sorted([DISPATCH, "validate.c"]), naming


def test_every_blocking_path_sleeps_in_the_one_wait_loop(symbols: dict[str, tuple[set[str], set[str]]]) -> None:
    """Only wait.c sleeps on a futex: every blocking call goes through its wait loop."""
    sleepers = sorted(f for f, (_, used) in symbols.items() if "shmchan_futex_wait" in used)
    assert sleepers == ["wait.c"], sleepers


# ---- the barrier table of docs/protocol.md ----


def _barrier_sites() -> dict[str, set[str]]:
    """Barrier label -> the core files with a comment that opens with it at a barrier (`/* (B) ...`,
    `/* (C)/(E) ...`); the tables at the top of the files only mention them."""
    site = re.compile(r"/\*\s*((?:\([A-Z]\d?\)/?)+)")
    found: dict[str, set[str]] = {}
    for f in [*_core_sources(), "internal.h"]:  # internal.h: the inline helpers every operation calls
        for labels in site.findall((CSRC / f).read_text()):
            for label in re.findall(r"\(([A-Z]\d?)\)", labels):
                found.setdefault(label, set()).add(f)
    return found


def test_barrier_table_points_at_the_code() -> None:
    """Each barrier of docs/protocol.md's table names the files that hold it, exactly; every lettered
    barrier in the code is in the table (S1-S6, process-local, in the sentence below it)."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    table: dict[str, set[str]] = {}
    for row in re.findall(r"^\| ([A-Z]\d?) \|[^|]*\| ([^|]*) \|", doc, re.M):
        table[row[0]] = {f.strip() for f in row[1].split(",")}
    sites = _barrier_sites()
    assert {"A", "B", "C", "H", "M1", "J4"} <= set(table)
    wrong = {b: (sorted(table.get(b, set())), sorted(sites.get(b, set())))
             for b in set(table) | set(sites) if not b.startswith("S") and table.get(b) != sites.get(b)}
    assert not wrong, f"barrier: (files in docs/protocol.md, files holding it): {wrong}"
    guard = {b for b in sites if b.startswith("S")}
    assert guard == {f"S{i}" for i in range(1, 7)}
    assert all(sites[b] == ({"internal.h"} if b == "S4" else {"guard.c"}) for b in guard), sites
    assert re.search(r"Barriers S1.S6 in `csrc/guard\.c`", doc)
