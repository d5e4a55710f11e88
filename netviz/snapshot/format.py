"""The vocabulary of the snapshot format, defined once on the netviz side.

docs/snapshot.md describes the format. The payload (netviz/payload/capture.py) is sent alone to the
machines and cannot import netviz: it keeps its own copies of these names, and
tests/test_snapshot_vocabulary.py pins them to the ones here.

Standard library only, and nothing from netviz: netviz/snapshot/framing.py imports it too.
"""

from __future__ import annotations

import socket as _socket
from typing import Optional

SCHEMA = "netviz.snapshot/1"

# The transport framing (docs/snapshot.md, "Transport framing"): the lines around the
# base64 of the zlib-compressed JSON.
FRAME_BEGIN = "NETVIZ-SNAPSHOT-BEGIN"
FRAME_END = "NETVIZ-SNAPSHOT-END"
FRAME_VERSION = 1


def canonical_address(text: str) -> Optional[str]:
    """The canonical text of an IPv4 or IPv6 address (as inet_ntop writes it), else None."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            return _socket.inet_ntop(family, _socket.inet_pton(family, text))
        except (OSError, ValueError):
            continue
    return None
