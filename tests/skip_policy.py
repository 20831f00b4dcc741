"""A pytest plugin: with SHMCHAN_FAIL_ON_SKIP=1 (set by .ci/run) every skip is a failure, so CI cannot
pass while part of the suite did not run. tests/conftest.py installs its hooks; on its own it is
``-p skip_policy`` with tests/ on the path."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

#: the environment variable that turns skips into failures
FAIL_ON_SKIP = "SHMCHAN_FAIL_ON_SKIP"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With SHMCHAN_FAIL_ON_SKIP=1, report every skip (a ``skip`` call, a ``skipif`` mark, an
    ``importorskip``) as a failure that keeps the skip's reason."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get(FAIL_ON_SKIP) != "1" or not report.skipped or hasattr(report, "wasxfail"):
        return
    _skip_to_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """The same for a whole module skipped at import (a module-level ``importorskip``)."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get(FAIL_ON_SKIP) == "1" and report.skipped:
        _skip_to_failure(report)


def _skip_to_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped ({reason}), and {FAIL_ON_SKIP}=1 makes a skip a failure"
