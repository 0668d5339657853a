"""Intentions for training examples, derived from the held-out target item (the paper's recipe).

Specific (I2): a few keywords of the target's title, plus its category. Vague (I1): the target's
category (or, lacking one, its brand) phrased as a need. Data without categories or brands (the
Games titles) has no vague intention; the caller then picks another template.
"""

from __future__ import annotations

import random
import re

from . import fields

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'+&-]*")
_STOP = frozenset(
    "a an and the of for with to in on by from or at as is edition game games version new pack bundle"
    " set import old model only".split()
)


def title_keywords(title: str, rng: random.Random, k: int = 3) -> list[str]:
    """Up to k distinctive title words, kept in title order (a sample: the query should not be the title)."""
    words, seen = [], set()
    for w in _WORD.findall(title or ""):
        low = w.lower()
        if low not in _STOP and len(low) > 1 and low not in seen:
            seen.add(low)
            words.append(low)
    if len(words) <= k:
        return words
    keep = sorted(rng.sample(range(len(words)), k))
    return [words[i] for i in keep]


def specific_intention(title: str, category: str | None, rng: random.Random, max_chars: int) -> str:
    query = ", ".join(title_keywords(title, rng))
    if category:
        query = f"{query}, {category}" if query else category
    return fields.field(query, max_chars)


def vague_intention(category: str | None, brand: str | None, max_chars: int) -> str | None:
    if category:
        return f"something from {fields.field(category, max_chars)}"
    if brand:
        return f"something by {fields.field(brand, max_chars)}"
    return None
