"""Token-budget batching: group rows so that each padded batch holds about ``batch_tokens`` tokens.

Rows are sorted by length first, so rows of similar length share a batch and padding stays small; the
batch size in rows then follows from the budget (many short rows or a few long ones), which keeps memory
and time per forward pass roughly constant whatever the prompt lengths are.
"""

from __future__ import annotations

from collections.abc import Sequence


def token_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches whose padded size (rows x longest) fits the budget.

    A row longer than the budget on its own still gets a batch of one (it is never dropped here; the
    caller's length limit decides what is too long to score).
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        longest_if_added = max(longest, lengths[i])
        if current and longest_if_added * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest_if_added = [], lengths[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches
