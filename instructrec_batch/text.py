"""Cleaning of untrusted text (titles, reviews, intents) before it goes anywhere near a prompt."""

from __future__ import annotations

import html
import re
import unicodedata

# Bidi embeddings/overrides/isolates and marks can visually reorder a prompt; zero-width characters hide text.
_INVISIBLE = dict.fromkeys(
    [0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)
_SPACE = re.compile(r"\s+")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # the ASCII members of Unicode category C


def clean_text(text: str | None, max_chars: int) -> str | None:
    """Printable, single-line, length-capped text; None stays None.

    HTML entities are unescaped first, so an escaped control character or delimiter ("&#10;", "&lt;")
    meets the same removal as a literal one. Control characters (including newlines, so a field cannot
    open a new prompt section), lone surrogates from broken UTF-8, and bidi/zero-width marks are
    removed; whitespace collapses.
    """
    if text is None:
        return None
    if "&" in text:  # catalogue titles arrive HTML-escaped ("Megaman &amp; Bass"); the model reads words
        text = html.unescape(text)
    if text.isascii():  # most titles: no surrogates or invisible marks possible, one regex for controls
        text = _ASCII_CONTROL.sub(" ", text)
    else:
        text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> '?'
        text = text.translate(_INVISIBLE)
        text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    text = _SPACE.sub(" ", text).strip()
    if len(text) > max_chars:
        text = text[: max(0, max_chars - 1)].rstrip() + "…"
    return text
