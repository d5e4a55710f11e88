from hypothesis import given, strategies as st

from netviz.textsafe import for_terminal


def test_escape_sequences_are_neutralised():
    hostile = "evil\x1b]0;owned\x07\x1b[2J\r\nname\x9b31m\u202egnp.exe"
    shown = for_terminal(hostile)
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert "\r" not in shown and "\n" not in shown and "\u202e" not in shown
    assert shown.startswith("evil\\x1b]0;owned\\x07")
    assert "\\u202e" in shown


def test_plain_and_unicode_names_pass_unchanged():
    assert for_terminal("nginx: worker process") == "nginx: worker process"
    assert for_terminal("サーバ") == "サーバ"


def test_long_text_is_cut():
    assert len(for_terminal("a" * 1000, limit=50)) == 50


@given(st.text())
def test_no_control_character_survives(text):
    shown = for_terminal(text, limit=10_000)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
