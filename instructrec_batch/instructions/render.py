"""From a filled template to the final model input, counted with the real tokenizer within a budget."""

from __future__ import annotations

import string
from collections.abc import Callable

# One tokenizer per Python worker process: Spark reuses workers, so it is loaded once, not per batch.
_TOKENIZERS: dict[str, object] = {}

LETTERS = tuple(string.ascii_uppercase[:20])  # "A".."T": single tokens in the SmolLM2 tokenizer


def tokenizer_for(tokenizer_dir: str):
    tok = _TOKENIZERS.get(tokenizer_dir)
    if tok is None:
        from ..model.base import load_tokenizer  # transformers only where prompts are rendered

        tok = _TOKENIZERS[tokenizer_dir] = load_tokenizer(tokenizer_dir)
    return tok


def model_input(tokenizer, preamble: str, instruction: str) -> str:
    """The exact string the model reads: its next token is the answer.

    Instruction-tuned tokenizers wrap it in their chat template with the generation prompt; a plain
    tokenizer gets text ending in "Answer:". Scorers tokenize it with add_special_tokens=False.
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": preamble}, {"role": "user", "content": instruction}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{preamble}\n\n{instruction}\nAnswer:"


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def fit_history(
    build: Callable[[list[str]], str], history: list[str], tokenizer, budget: int
) -> tuple[str, int, int]:
    """(prompt, n_tokens, n_history_kept): the most recent history that fits `budget` tokens.

    `build(titles)` renders the whole prompt for a history (oldest first). Only the oldest history
    goes; candidates and instruction are never cut, so a prompt over budget with no history left is
    returned as is (its token count says so). Most prompts fit at once; the rest take a binary search
    on how many of the oldest items to drop, every step an exact count of the rendered prompt (token
    counts of separately tokenized lines do not add up exactly).
    """
    def drop(k: int) -> tuple[str, int]:
        text = build(history[k:])
        return text, count_tokens(tokenizer, text)

    prompt, n = drop(0)
    if n <= budget or not history:
        return prompt, n, len(history)
    lo, hi = 1, len(history)  # the fewest dropped that fit lies in [lo, hi]; dropping all is accepted
    while lo < hi:
        mid = (lo + hi) // 2
        if drop(mid)[1] <= budget:
            hi = mid
        else:
            lo = mid + 1
    prompt, n = drop(hi)
    return prompt, n, len(history) - hi
