"""Text is text (issue 11): stored values shown or exported without their control characters acting.

The edge refuses control characters (:data:`ledger.domain.events.FREE_TEXT`),
but a store written by an older version may hold them, and what was accepted
stays readable.  So every output escapes them in one documented way: a
character is written as ``\\xNN`` (``\\uNNNN`` above U+00FF), the way Python
spells it, and a terminal or an XML parser never receives it raw.
"""

from __future__ import annotations

import re

# C0 and C1 control characters and DEL.  A terminal also keeps tab and newline,
# which free text may hold, and loses the bidirectional overrides and isolates
# (U+202A-U+202E, U+2066-U+2069), which would make it show text in another order
# than stored; XML 1.0 additionally cannot hold U+FFFE, U+FFFF or a lone surrogate.
_TERMINAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters but tab and newline, and bidi overrides, escaped."""
    return _TERMINAL.sub(_escaped, text)


def xml_text(text: str) -> str:
    """``text`` as XML 1.0 can hold it: characters it cannot (and C1 controls) escaped."""
    return _XML.sub(_escaped, text)
