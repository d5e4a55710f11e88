"""A snapshot's socket lists decoded straight into records, the rest of it as plain JSON values.

A fleet's snapshots are mostly sockets: a million at 1,000 machines. Reading them as JSON
dictionaries and then checking and copying each field in Python (fast.py) took about three times
as long as parsing the JSON itself. Here msgspec decodes each namespace's `sockets` list directly
into records, checking types and numeric bounds as it parses (docs/scale.md, "Reading the
snapshots"); everything else in the document is parsed by orjson, as loads_document does, and read
by the same readers as before.

Only a complete success is used. Whatever msgspec refuses (a type or a null the readers would
refuse, a lone surrogate, nesting deeper than it follows, a key it cannot place) makes
`typed_document` return None, and the caller reads the document the ordinary way, whose readers
accept or refuse it and say why. What msgspec accepted is checked further in Python for what it
cannot check while decoding (fast.checked_typed_sockets: address syntax, state names, inode range,
text); a record that fails those makes the whole document go the ordinary way too
(NotTypedShape), so that a faulty document is always described by the reference readers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import msgspec
import orjson

from netviz.kinds import KIND_NAMES
from netviz.snapshot.limits import UID_RANGE

# The bounds a JSON reader can check as it decodes; the others (address syntax, state names, the
# largest inode) are checked after it, as every reader does (fast.checked_typed_sockets).
_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_Kind = Literal[tuple(sorted(KIND_NAMES))]  # type: ignore[valid-type]  # (decoded as the literal's own string)
_Uid = Annotated[int, msgspec.Meta(ge=UID_RANGE[0], le=UID_RANGE[1])]


class DecodedSocket(msgspec.Struct, frozen=True, gc=False):
    """A socket record as the JSON has it, every field flat, before the checks that make it a
    Socket (fast.checked_typed_sockets).

    The optional fields' annotations are not Optional on purpose: the JSON may leave them out
    (None, or ()), but a null written there is refused, as the field-by-field reader does."""

    proto: _Kind
    inode: Annotated[int, msgspec.Meta(ge=1)]
    local: Optional[str]
    local_port: Optional[_Port]
    remote: Optional[str]
    remote_port: Optional[_Port]
    state: str
    uid: _Uid
    protocol: _Port = None  # type: ignore[assignment]
    interface: str = None  # type: ignore[assignment]
    packet_type: str = None  # type: ignore[assignment]
    local_all: tuple[str, ...] = ()
    remote_all: tuple[str, ...] = ()
    sctp_state: str = None  # type: ignore[assignment]


_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_NAMESPACES = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])
_SOCKETS = msgspec.json.Decoder(list[DecodedSocket])

# What makes msgspec or orjson refuse a part: the ordinary reading then says what is wrong.
_REFUSED = (msgspec.MsgspecError, ValueError, TypeError, RecursionError)


class NotTypedShape(Exception):
    """A decoded socket that the checks after msgspec refuse: read the document the ordinary way."""


def typed_document(text: str) -> Optional[dict[str, Any]]:
    """The document as loads_document gives it, except that each namespace's `sockets` is a list of
    DecodedSocket records (not yet checked, nor in their namespace); None when any part
    is not what the typed reading expects. `text` must have passed check_document_size."""
    try:
        top = _TOP.decode(text)
        namespaces = top.get("namespaces")
        if namespaces is None:
            return None
        document = {key: orjson.loads(memoryview(raw)) for key, raw in top.items() if key != "namespaces"}
        document["namespaces"] = [
            {key: _SOCKETS.decode(raw) if key == "sockets" else orjson.loads(memoryview(raw)) for key, raw in namespace.items()}
            for namespace in _NAMESPACES.decode(namespaces)
        ]
    except _REFUSED:
        return None
    return document
