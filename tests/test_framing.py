"""decode_framed on what a real SSH session can deliver: noise, repeats, cuts, damage."""

import base64
import io
import json

import pytest

from netviz.errors import NetvizError
from netviz.snapshot.framing import FrameError, decode_framed, encode_framed
from netviz.payload import capture

DOC = {"schema": "netviz.snapshot/1", "text": "caf\u00e9 \u2603 \"q\" \n", "n": list(range(500))}
TEXT = json.dumps(DOC)


def payload_frame(doc=DOC) -> bytes:
    stream = io.BytesIO()
    capture.write_framed(doc, stream)
    return stream.getvalue()


def test_payload_frame_round_trips_and_matches_encode_framed():
    framed = payload_frame({"a": 1})
    assert json.loads(decode_framed(framed)) == {"a": 1}
    assert json.loads(decode_framed(encode_framed(TEXT))) == DOC
    lines = framed.splitlines()
    assert lines[0].startswith(b"NETVIZ-SNAPSHOT-BEGIN 1 ") and lines[-1] == b"NETVIZ-SNAPSHOT-END"
    big = payload_frame(DOC)
    assert all(len(line) <= 76 for line in big.splitlines()[1:-1])


def test_noise_before_and_after_is_ignored_and_the_last_frame_wins():
    older = encode_framed(json.dumps({"old": True}))
    data = b"motd\r\nNETVIZ-SNAPSHOT-BEGIN in a banner\n" + older + b"x" + b"\n" + encode_framed(TEXT) + b"logout\n"
    assert json.loads(decode_framed(data)) == DOC


def test_crlf_line_endings_from_a_pty_are_accepted():
    framed = encode_framed(TEXT).replace(b"\n", b"\r\n")
    assert json.loads(decode_framed(framed)) == DOC


def kind(data: bytes) -> str:
    with pytest.raises(FrameError) as caught:
        decode_framed(data)
    assert isinstance(caught.value, NetvizError) and "\n" not in str(caught.value)
    return caught.value.kind


def test_failures_have_kinds():
    framed = encode_framed(TEXT)
    assert kind(b"bash: python3: command not found\n") == "no frame"
    assert kind(b"") == "no frame"
    assert kind(framed[: len(framed) // 2]) == "truncated"
    assert kind(framed[: framed.index(b"\n")]) == "truncated"
    assert kind(framed.replace(b"NETVIZ-SNAPSHOT-END\n", b"")) == "truncated"
    assert kind(framed.replace(b"BEGIN 1 ", b"BEGIN 2 ")) == "unsupported"
    assert kind(framed.replace(b"BEGIN 1 ", b"BEGIN 1 x")) == "corrupt"


def test_damaged_bytes_are_corrupt():
    framed = bytearray(encode_framed(TEXT))
    body = framed.index(b"\n") + 5
    framed[body] = ord("A") if framed[body] != ord("A") else ord("B")
    assert kind(bytes(framed)) == "corrupt"
    # Right digest and length, but not zlib data.
    import hashlib
    junk = b"not zlib at all"
    frame = (b"NETVIZ-SNAPSHOT-BEGIN 1 %d %s\n" % (len(junk), hashlib.sha256(junk).hexdigest().encode())
             + base64.encodebytes(junk) + b"NETVIZ-SNAPSHOT-END\n")
    assert kind(frame) == "corrupt"
    # Extra bytes beyond the announced length.
    header, rest = bytes(encode_framed(TEXT)).split(b"\n", 1)
    fields = header.split()
    shorter = b" ".join(fields[:2] + [str(int(fields[2]) - 1).encode()] + fields[3:])
    assert kind(shorter + b"\n" + rest) == "corrupt"
