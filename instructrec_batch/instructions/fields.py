"""Untrusted text (titles, reviews, queries) as delimited prompt fields that cannot break out.

Every value is cleaned with `text.clean_text` (no control characters or newlines, so it cannot start
a new prompt line such as a fake candidate "U. ..."; length-capped) and then loses every '<' and '>',
so it can neither close its own << >> field nor spell a chat-template special token like <|im_end|>.
Edge pipes go too: a value of exactly "|im_end|" would otherwise meet the delimiters' inner '<' and '>'
and spell "<|im_end|>" (found by tests/reliability/test_properties.py).
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..text import clean_text

OPEN, CLOSE = "<<", ">>"
_STRIP = str.maketrans("", "", "<>")
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(\s|$)")


# Cached: titles repeat across users (each user's ~20 candidates and history lines come from one
# catalogue), and cleaning was half of the prompts stage's Python time before (benchmarks/prompts.py).
@lru_cache(maxsize=1 << 16)
def clean_value(text: str | None, max_chars: int) -> str | None:
    """The cleaned text without delimiter characters; None when nothing printable is left."""
    cleaned = clean_text(text, max_chars)
    if cleaned is None:
        return None
    cleaned = " ".join(cleaned.translate(_STRIP).split()).strip(" |")
    return cleaned or None


def field(text: str | None, max_chars: int) -> str:
    return f"{OPEN}{clean_value(text, max_chars) or ''}{CLOSE}"


def history_lines(titles: list[str], max_chars: int) -> list[str]:
    """One line per item, oldest first (the paper's implicit preference, most recent last)."""
    return [f"- {field(t, max_chars)}" for t in titles]


def as_list(value) -> list:
    """A list column's value as a list: None -> [], and numpy arrays (how pandas frames from Arrow hold
    list columns) as well as lists, without the ambiguous truth value of an array."""
    return [] if value is None else list(value)


def candidate_line(letter: str, title: str | None, max_chars: int) -> str:
    """The letter comes after its title: under causal attention the letter token can then see the
    title it labels, so answering is one hop (attend to the best candidate's letter and copy it).
    Written first ("J. <<title>>") the letter cannot see its title, and a 135M model tuned for 1.3k
    steps on an H100 never learned the two-hop version (chance-level validation, answer always "A")."""
    return f"{field(title, max_chars)} [{letter}]"


def candidate_block(letters: list[str], titles: list[str], max_chars: int) -> str:
    return "\n".join(candidate_line(letter, t, max_chars) for letter, t in zip(letters, titles))


# Why a candidate without a history item behind it was offered, by the source that offered it first.
SOURCE_REASONS = {
    "sequential": "fits the sequence of your recent items",
    "als": "liked by customers with a history like yours",
    "popularity": "popular with other customers",
}
NO_REASON = "no reason recorded"


def reason_text(source: str | None, reason_title: str | None, max_chars: int) -> str:
    """A recommendation's reason in plain words: the history item behind it (its title cleaned as in a
    prompt: never raw text), else what its source means, else NO_REASON."""
    title = clean_value(reason_title, max_chars)
    if title:
        return f"because you bought {title}"
    return SOURCE_REASONS.get((source or "").split("+")[0], NO_REASON)


def intention_text(queries: list[str], max_chars: int) -> str:
    return "; ".join(field(q, max_chars) for q in queries)


def preference_text(
    liked: list[str], disliked: list[str], categories: list[str], brands: list[str], max_chars: int,
    summary: str | None = None,
) -> str:
    """The explicit preference (P2) sentence; only the quoted parts come from users, sellers or the
    LLM teacher. ``summary``: the teacher's sentence about the user's reviews (instructions/teacher.py),
    which then stands in for the liked / disliked review snippets."""
    parts = []
    if summary:
        parts.append("in short " + field(summary, max_chars))
    else:
        if liked:
            parts.append("liked " + " ".join(field(s, max_chars) for s in liked))
        if disliked:
            parts.append("disliked " + " ".join(field(s, max_chars) for s in disliked))
    if categories:
        parts.append("favourite categories " + ", ".join(field(c, max_chars) for c in categories))
    if brands:
        parts.append("favourite brands " + ", ".join(field(b, max_chars) for b in brands))
    return "; ".join(parts) + "." if parts else ""


def clean_sentence(generated: str | None, max_chars: int) -> str | None:
    """What a model wrote (a teacher's preference, a top-1 explanation), as stored: its first sentence,
    cleaned like a prompt field (no delimiters, control characters or chat tokens); None when fewer
    than three words are left."""
    cleaned = clean_value(generated, 4 * max_chars)
    if cleaned is None:
        return None
    match = _FIRST_SENTENCE.match(cleaned)
    sentence = (match.group(1) if match else cleaned)[:max_chars].strip()
    return sentence if len(sentence.split()) >= 3 else None
