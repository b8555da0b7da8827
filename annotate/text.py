"""Text safe to print on a terminal: `printable(text)`.

Imported text, model answers and a server's error body can hold terminal escape sequences
(`ESC [ 2 J` clears the screen, OSC 8 makes links, OSC 52 writes the clipboard) and other control
characters (a carriage return overwrites what was printed). Everything prefkit prints from data it did
not write itself goes through `printable` first: escape sequences are removed whole, other control
characters (C0, DEL, C1) and the Unicode bidirectional overrides (which make text read differently
from how it is stored) are dropped; newlines and tabs are kept unless `newlines=False`.
"""

from __future__ import annotations

import re

# CSI (ESC [ … final byte), OSC (ESC ] … BEL or ESC \), other two-byte ESC sequences, and the
# single-byte C1 CSI/OSC introducers (0x9b, 0x9d) with their bodies.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + "]")
_CONTROLS_AND_LINES = re.compile("[\x00-\x1f\x7f-\x9f" + _BIDI + "]")


def printable(text: object, *, newlines: bool = True) -> str:
    """`text` (any value: it is `str()`-ed) without escape sequences or control characters.

    `newlines=True` keeps "\\n" and "\\t"; `newlines=False` turns them into spaces too, for a value
    that must stay on one line (a field in a one-line error message).
    """
    value = text if isinstance(text, str) else str(text)
    if value.isascii() and value.isprintable():
        return value  # the common case: nothing to strip
    value = _ESCAPES.sub("", value)
    if newlines:
        return _CONTROLS.sub("", value)
    return _CONTROLS_AND_LINES.sub(lambda m: " " if m.group() in "\n\t" else "", value)


__all__ = ["printable"]
