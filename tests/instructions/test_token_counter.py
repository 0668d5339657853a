"""Cutting a history to a token budget: the cheap counts must equal exact counts of the prompt returned."""

from __future__ import annotations

import random

import pytest

from instructrec_batch.instructions import fields
from instructrec_batch.instructions.render import TokenCounter, count_tokens, tokenizer_for

TEMPLATE = "The user bought these items, oldest first:\n{history}\nWhich of these fits next?\n{candidates}"
TITLES = ["Halo 3", "Zelda: Breath of the Wild!", "FIFA 19 (PS4)", "Mario Kart 8 Deluxe", "Spyro... Reignited",
          "Xbox One Controller - Black", "<<Fake>> [B]", "Ｆｕｌｌｗｉｄｔｈ", "Pokémon: Let's Go", "100% Orange Juice"]


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    return tokenizer_for(str(base_model_dir))


def _exact_fit(build, lines, tokenizer, budget):
    """The reference: drop the oldest line until the exact count fits."""
    for drop in range(len(lines) + 1):
        prompt = build(lines[drop:])
        n = count_tokens(tokenizer, prompt)
        if n <= budget:
            return prompt, n, len(lines) - drop
    return prompt, n, 0


def test_the_bundled_tokenizer_splits_at_every_line_break(tokenizer):
    assert TokenCounter(tokenizer).splits_lines


def test_cut_histories_match_the_exact_reference_for_every_budget(tokenizer):
    counter = TokenCounter(tokenizer)  # a fresh one: the first cut checks the arithmetic, the rest use it
    rng = random.Random(3)
    candidates = fields.candidate_block(list("ABC"), TITLES[:3], 80)
    build = lambda kept: TEMPLATE.format(history="\n".join(kept), candidates=candidates)  # noqa: E731
    for _ in range(60):
        lines = fields.history_lines(rng.choices(TITLES, k=rng.randint(1, 12)), 80)
        budget = rng.randint(20, 140)
        got = counter.fit_history(build, lines, budget, layout=TEMPLATE)
        assert got == _exact_fit(build, lines, tokenizer, budget)
        assert got[1] == count_tokens(tokenizer, got[0])
    assert counter._additive == {TEMPLATE: True}


def test_lines_that_break_the_arithmetic_are_caught_on_the_first_cut_and_counted_exactly(tokenizer):
    # Lines that start with spaces: the line break before each joins the next line's first piece, so
    # a line's count alone is not its count in the prompt.
    counter = TokenCounter(tokenizer)
    lines = ["   alpha beta", "   gamma", "   delta epsilon", "   zeta", "   eta theta iota"]
    build = lambda kept: TEMPLATE.format(history="\n".join(kept), candidates="<<x>> [A]")  # noqa: E731
    full = count_tokens(tokenizer, build(lines))
    for budget in range(full - 12, full):
        got = counter.fit_history(build, lines, budget, layout=TEMPLATE)
        assert got == _exact_fit(build, lines, tokenizer, budget)
    assert counter._additive == {TEMPLATE: False}


def test_line_counts_are_cached_and_equal_to_fresh_counts(tokenizer):
    counter = TokenCounter(tokenizer)
    lines = fields.history_lines(TITLES, 80)
    first = counter.line_counts(lines + lines[:3])
    assert first == [count_tokens(tokenizer, line + "\n") for line in lines + lines[:3]]
    assert counter.line_counts(lines) == first[: len(lines)]
