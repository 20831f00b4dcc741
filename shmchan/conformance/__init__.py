"""The conformance kit: runs a peer through every scenario of docs/conformance.md against this
package (the reference implementation) and gives a verdict per numbered rule of docs/protocol.md.

    python -m shmchan.conformance [--quick] [--only PATTERN] [--json] -- PEER_COMMAND [ARG...]

``PEER_COMMAND`` implements the command-line contract of docs/conformance.md (``produce``,
``consume``, ``bcast``, ``state`` and ``open``). :func:`run` does the same from Python.
"""

from __future__ import annotations

from ._peer import Peer, PeerError
from ._runner import RULES, SCENARIOS, Outcome, Report, run

__all__ = ["RULES", "SCENARIOS", "Outcome", "Peer", "PeerError", "Report", "run"]
