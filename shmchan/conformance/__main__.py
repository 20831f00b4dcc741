"""``python -m shmchan.conformance [--quick] [--only GLOB] [--json] -- PEER_COMMAND [ARG...]``."""

from __future__ import annotations

import argparse
import json
import sys

from ._runner import SCENARIOS, Outcome, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m shmchan.conformance",
        description="Run a peer through the conformance scenarios against the Python reference implementation "
                    "and print a verdict per numbered rule of docs/protocol.md (docs/conformance.md). Exit 0 when "
                    "every scenario passed, 1 otherwise.")
    ap.add_argument("--quick", action="store_true", help="fewer messages per scenario (about a third of the time)")
    ap.add_argument("--only", metavar="GLOB", help="run only the scenarios whose name matches")
    ap.add_argument("--list", action="store_true", help="list the scenarios and the rules they check, then exit")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    ap.add_argument("peer", nargs="*", metavar="PEER_COMMAND",
                    help="the peer's command (after --), e.g. peers/go/build/shmchan-peer")
    a = ap.parse_args(argv)
    if a.list:
        for name, title, rules, _ in SCENARIOS:
            print(f"{name}: {title}\n    rules: {' '.join(rules)}")
        return 0
    if not a.peer:
        ap.error("give the peer's command after --")

    def progress(o: Outcome) -> None:
        if not a.json:
            print(f"{'pass' if o.passed else 'FAIL'}  {o.name} ({o.seconds:.1f} s): {o.detail}", flush=True)

    report = run(a.peer, quick=a.quick, only=a.only, progress=progress)
    verdicts = report.verdicts()
    if a.json:
        json.dump({"peer": report.peer, "passed": report.passed,
                   "scenarios": [o.__dict__ for o in report.outcomes], "rules": verdicts}, sys.stdout, indent=1)
        print()
    else:
        print("\nrules:")
        for rule, v in verdicts.items():
            print(f"  {rule:4} {v}")
        failed = sum(not o.passed for o in report.outcomes)
        print(f"\n{len(report.outcomes) - failed} passed, {failed} failed")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
