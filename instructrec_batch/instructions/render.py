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
        from ..tokenizers import load_tokenizer  # transformers only where prompts are rendered

        tok = _TOKENIZERS[tokenizer_dir] = load_tokenizer(tokenizer_dir)
    return tok


class ModelInput:
    """`model_input` for one tokenizer and preamble, with the chat template rendered once.

    The template is applied to a sentinel body and split around it, so that each prompt is a string
    concatenation instead of a Jinja render (prompts are rendered several times under a budget).
    """

    _SENTINEL = "\x00BODY\x00"

    def __init__(self, tokenizer, preamble: str):
        wrapped = model_input(tokenizer, preamble, self._SENTINEL)
        self.prefix, self.suffix = wrapped.split(self._SENTINEL)

    def __call__(self, instruction: str) -> str:
        return self.prefix + instruction + self.suffix


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
    build: Callable[[list[str]], str], lines: list[str], tokenizer, budget: int
) -> tuple[str, int, int]:
    """(prompt, n_tokens, n_history_kept): the most recent history lines that fit `budget` tokens.

    `build(lines)` renders the whole prompt from rendered history lines (oldest first). Only the
    oldest lines go; candidates and instruction are never cut, so a prompt over budget with no history
    left is returned as is (its token count says so). Most prompts fit at once. Otherwise the lines'
    own token counts (one batch call) say how many to drop, and exact counts of the rendered prompt
    confirm it, dropping one more while still over (line counts are not exactly additive).
    """
    prompt = build(lines)
    n = count_tokens(tokenizer, prompt)
    if n <= budget or not lines:
        return prompt, n, len(lines)
    per_line = [len(ids) for ids in tokenizer([line + "\n" for line in lines], add_special_tokens=False)["input_ids"]]
    drop, excess = 0, n - budget
    while drop < len(lines) and excess > 0:
        excess -= per_line[drop]
        drop += 1
    while True:
        prompt = build(lines[drop:])
        n = count_tokens(tokenizer, prompt)
        if n <= budget or drop >= len(lines):
            return prompt, n, len(lines) - drop
        drop += 1


def render_rows(frame, tokenizer_dir: str, preamble: str, render_row, to_pandas, schema):
    """``frame`` (one row per user) rendered inside Spark's Python workers: ``render_row(row, tokenizer,
    wrap)`` per row, ``to_pandas(rows)`` per batch. The tokenizer is loaded once per worker and the
    chat template applied once (ModelInput), whatever the number of batches."""

    def render_batches(batches):
        tokenizer = tokenizer_for(tokenizer_dir)
        wrap = ModelInput(tokenizer, preamble)
        for batch in batches:
            yield to_pandas([render_row(r, tokenizer, wrap) for r in batch.itertuples(index=False)])

    return frame.mapInPandas(render_batches, schema)
