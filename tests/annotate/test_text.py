"""`prefkit.annotate.text.printable`: what reaches a terminal holds no escape sequence or control character."""

import unicodedata

import pytest
from prefkit.annotate.text import printable

HOSTILE = [
    ("clear\x1b[2J\x1b[Hscreen", "clearscreen"),
    ("colour \x1b[1;31mred\x1b[0m", "colour red"),
    ("link \x1b]8;;http://evil/\x07here\x1b]8;;\x07", "link here"),
    ("clip \x1b]52;c;ZXZpbA==\x1b\\done", "clip done"),
    ("c1 \x9b2Jcsi", "c1 csi"),
    ("over\rwrite", "overwrite"),
    ("bell\x07 nul\x00 bs\x08 del\x7f", "bell nul bs del"),
    ("rtl \u202eevil\u202c", "rtl evil"),
    ("bare esc \x1b", "bare esc "),
]


@pytest.mark.parametrize(("raw", "shown"), HOSTILE)
def test_escape_sequences_and_controls_are_removed(raw, shown):
    assert printable(raw) == shown


def test_text_newlines_and_tabs_stay_unless_one_line_is_asked():
    assert printable("a\n\tb") == "a\n\tb"
    assert printable("a\r\n\tb", newlines=False) == "a  b"
    assert printable("naïve — 中文 ✓") == "naïve — 中文 ✓"
    assert printable(None) == "None" and printable(3) == "3"


def test_no_control_character_survives_any_code_point():
    # every code point below U+3000 and the bidi block, one at a time and inside an escape sequence
    for cp in [*range(0x3000), *range(0x2000, 0x2070)]:
        ch = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        for raw in (f"x{ch}y", f"\x1b[{ch}m", f"\x1b]{ch}\x07"):
            out = printable(raw)
            for c in out:
                assert c in "\n\t" or unicodedata.category(c) != "Cc", (cp, raw, out)
                assert c not in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069", (cp, raw, out)


def test_stats_and_cli_errors_print_imported_text_inert(tmp_path, capsys):
    import json

    from prefkit.cli import main

    hostile = "evil\x1b[2J\x1b]0;title\x07"
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "chosen_model": hostile}) + "\n")
    store = str(tmp_path / "s")
    assert main(["import", "--store", store, "--source", hostile, str(good)]) == 0
    assert main(["stats", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "evil" in out and "\x1b" not in out and "\x07" not in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": {hostile: 1}}) + "\n")
    assert main(["import", "--store", store, "--map", f"x{hostile}=prompt", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("prefkit import: error: ") and err.count("\n") == 1
    assert "\x1b" not in err and "\x07" not in err
