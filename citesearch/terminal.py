"""Text from documents made safe to print on a terminal.

Document text, titles and ids come from anywhere: an ESC sequence in them would move the cursor, recolour or
retitle the user's terminal, and bidirectional overrides reorder what is shown. Human-readable CLI output passes
them through ``escape_for_terminal``; ``--json`` output is escaped by the JSON encoder already.
"""

from __future__ import annotations

import unicodedata

# Bidirectional embeddings, overrides and isolates: they change the order in which the rest of the line is shown.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def escape_for_terminal(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters (C0, DEL, C1) and bidi controls written as ``\\xNN``/``\\uNNNN``."""
    out = []
    for ch in text:
        if keep_newlines and ch == "\n":
            out.append(ch)
        elif ch in _BIDI_CONTROLS or unicodedata.category(ch) == "Cc":
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)
