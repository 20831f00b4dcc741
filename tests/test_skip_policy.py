"""The skip policy (tests/skip_policy.py): with SHMCHAN_FAIL_ON_SKIP=1, which .ci/run sets, every
kind of skip fails the run; without it, skips stay skips."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SKIPPING = '''
import pytest

def test_skip_call():
    pytest.skip("no peer")

@pytest.mark.skipif(True, reason="marked")
def test_skipif_mark():
    pass

def test_importorskip():
    pytest.importorskip("shmchan_no_such_module")

@pytest.mark.xfail(reason="expected", strict=True)
def test_xfail_stays_xfail():
    assert False

def test_passes():
    pass
'''
SKIPPED_MODULE = '''
import pytest

pytest.importorskip("shmchan_no_such_module")

def test_never_collected():
    pass
'''


def _run(tmp_path: Path, source: str, fail_on_skip: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "SHMCHAN_FAIL_ON_SKIP"}
    env["PYTHONPATH"] = str(TESTS)
    if fail_on_skip:
        env["SHMCHAN_FAIL_ON_SKIP"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "skip_policy", "-p", "no:cacheprovider", "-o", "addopts=",
         "--rootdir", str(tmp_path), str(tmp_path / "test_sample.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )


def _counts(out: str) -> dict[str, int]:
    last = out.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}


@pytest.mark.parametrize("fail_on_skip", [False, True])
def test_every_kind_of_skip_fails_only_when_the_variable_is_set(tmp_path: Path, fail_on_skip: bool) -> None:
    """A skip call, a skipif mark and an importorskip each fail with SHMCHAN_FAIL_ON_SKIP=1 (their reason
    kept in the report); an xfail is left alone; without the variable they are skips."""
    p = _run(tmp_path, SKIPPING, fail_on_skip)
    counts = _counts(p.stdout)
    if not fail_on_skip:
        assert p.returncode == 0, p.stdout
        assert counts == {"passed": 1, "skipped": 3, "xfailed": 1}, p.stdout
        return
    assert p.returncode == 1, p.stdout
    # a skipif mark is decided in setup, so pytest counts it as an error rather than a failure
    assert counts == {"failed": 2, "passed": 1, "xfailed": 1, "error": 1}, p.stdout
    assert "skipped (Skipped: no peer), and SHMCHAN_FAIL_ON_SKIP=1 makes a skip a failure" in p.stdout


def test_a_module_skipped_at_import_fails_when_the_variable_is_set(tmp_path: Path) -> None:
    """A module-level importorskip skips the whole module; with the variable it is a collection error."""
    assert _run(tmp_path, SKIPPED_MODULE, False).returncode == 5  # no tests ran: the module was skipped
    p = _run(tmp_path, SKIPPED_MODULE, True)
    assert p.returncode == 2, p.stdout  # interrupted: an error during collection
    assert "shmchan_no_such_module" in p.stdout and "makes a skip a failure" in p.stdout
