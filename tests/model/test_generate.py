"""Batched greedy generation: each chat's answer does not depend on its batch or on padding."""

from __future__ import annotations

from instructrec_batch.model.base import load_causal_lm, load_tokenizer
from instructrec_batch.model.generate import generate_chats


def test_answers_are_in_input_order_deterministic_and_independent_of_batching(tiny_model_dir):
    model, tokenizer = load_causal_lm(tiny_model_dir), load_tokenizer(tiny_model_dir)
    chats = [[{"role": "user", "content": text}] for text in
             ("Say something.", "A much longer request that pads the others in its batch, " * 3, "Hi")]
    together = generate_chats(model, tokenizer, chats, max_new_tokens=6, batch_size=3)
    alone = [generate_chats(model, tokenizer, [chat], max_new_tokens=6, batch_size=1)[0] for chat in chats]
    assert [g.text for g in together] == [g.text for g in alone]
    assert together == generate_chats(model, tokenizer, chats, max_new_tokens=6, batch_size=2)
    assert all(0 < g.n_new_tokens <= 6 for g in together)
