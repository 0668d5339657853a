"""From a filled template to the final model input, counted with the real tokenizer within a budget."""

from __future__ import annotations

import string
import weakref
from collections.abc import Callable

# One tokenizer per Python worker process: Spark reuses workers, so it is loaded once, not per batch.
_TOKENIZERS: dict[str, object] = {}
_COUNTERS: "weakref.WeakKeyDictionary[object, TokenCounter]" = weakref.WeakKeyDictionary()

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


def _splits_at_every_line_break(tokenizer) -> bool:
    """Whether the tokenizer's pre-tokenizer is GPT-2's byte-level regex with no normalizer: then a line
    break between two history lines ("...>>" newline "- <<...") is a piece of its own, BPE never merges
    across it, and a prompt's count is the sum of its lines' counts around fixed template text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.normalizer is not None:
        return False
    pre = backend.pre_tokenizer
    return type(pre).__name__ == "ByteLevel" and bool(getattr(pre, "use_regex", False))


class TokenCounter:
    """Exact token counts for one tokenizer, with what makes cutting a history to a budget cheap:
    each history line's count is cached (titles repeat across users), and where the tokenizer splits
    at every line break, a cut prompt's count is the full count minus the dropped lines' counts. That
    arithmetic is checked against an exact count on the first cut of each template and used only
    where it held; tokenization was ~85% of rendering a prompt (benchmarks/prompts.py)."""

    MAX_CACHED_LINES = 1 << 17

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.splits_lines = _splits_at_every_line_break(tokenizer)
        self._line_counts: dict[str, int] = {}
        self._additive: dict[str, bool] = {}  # template text -> the arithmetic held on its first cut

    def count(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    def line_counts(self, lines: list[str]) -> list[int]:
        """Each line's count with its line break, as it stands inside a prompt."""
        missing = [line for line in dict.fromkeys(lines) if line not in self._line_counts]
        if missing:
            if len(self._line_counts) + len(missing) > self.MAX_CACHED_LINES:
                self._line_counts.clear()
            encoded = self.tokenizer([line + "\n" for line in missing], add_special_tokens=False)["input_ids"]
            self._line_counts.update(zip(missing, map(len, encoded)))
        return [self._line_counts[line] for line in lines]

    def fit_history(self, build: Callable[[list[str]], str], lines: list[str], budget: int,
                    layout: str | None = None) -> tuple[str, int, int]:
        """(prompt, n_tokens, n_history_kept): the most recent history lines that fit `budget` tokens.

        `build(lines)` renders the whole prompt from rendered history lines (oldest first). Only the
        oldest lines go; candidates and instruction are never cut, so a prompt over budget with no
        history left is returned as is (its token count says so). Most prompts fit at once. Otherwise
        the lines' own counts say how many to drop; ``layout`` (the template's text) allows the
        arithmetic count of the cut prompt where it was checked exact for that layout, and otherwise
        exact counts of the rendered prompt confirm the cut, dropping one more while still over.
        """
        prompt = build(lines)
        n = self.count(prompt)
        if n <= budget or not lines:
            return prompt, n, len(lines)
        per_line = self.line_counts(lines)
        drop, excess = 0, n - budget
        while drop < len(lines) and excess > 0:
            excess -= per_line[drop]
            drop += 1
        if layout is not None and self.splits_lines and drop < len(lines):
            estimate = n - sum(per_line[:drop])
            if self._additive.get(layout):
                return build(lines[drop:]), estimate, len(lines) - drop
            if layout not in self._additive:
                prompt = build(lines[drop:])
                exact = self.count(prompt)
                self._additive[layout] = exact == estimate
                if exact <= budget:
                    return prompt, exact, len(lines) - drop
        while True:
            prompt = build(lines[drop:])
            n = self.count(prompt)
            if n <= budget or drop >= len(lines):
                return prompt, n, len(lines) - drop
            drop += 1


def token_counter(tokenizer) -> TokenCounter:
    """The one TokenCounter of this tokenizer object (its caches live as long as the tokenizer)."""
    counter = _COUNTERS.get(tokenizer)
    if counter is None:
        counter = _COUNTERS[tokenizer] = TokenCounter(tokenizer)
    return counter


def fit_history(
    build: Callable[[list[str]], str], lines: list[str], tokenizer, budget: int, layout: str | None = None,
) -> tuple[str, int, int]:
    """TokenCounter.fit_history with this tokenizer's counter."""
    return token_counter(tokenizer).fit_history(build, lines, budget, layout)


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
