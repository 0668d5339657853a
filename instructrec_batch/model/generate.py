"""Greedy text generation for chat prompts, in batches (the LLM teacher of the preferences stage).

Greedy rather than sampled: a rerun of a date must write the same sentences. Greedy decoding of a
small model loops ("faux faux faux ..." in a teacher's sentence), so no 3-gram may repeat. Prompts are
left-padded so that every row's next token comes from the last column, which is what
``model.generate`` of a decoder-only model expects.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Generated:
    text: str
    n_new_tokens: int


def generate_chats(model, tokenizer, chats: list[list[dict]], max_new_tokens: int, batch_size: int) -> list[Generated]:
    """One greedy answer per chat (a list of {"role", "content"} messages), in the input order."""
    prompts = [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats]
    return generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size)


def generate_texts(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[Generated]:
    """One greedy continuation per prompt (already in the chat template), in the input order. Batches
    are formed from length-sorted prompts, so little compute goes to padding."""
    import torch

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out: list[Generated | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in chosen], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, no_repeat_ngram_size=3,
                                 pad_token_id=tokenizer.pad_token_id)
        new = ids[:, enc["input_ids"].shape[1]:]
        for row, i in enumerate(chosen):
            tokens = [t for t in new[row].tolist() if t != tokenizer.pad_token_id]
            out[i] = Generated(tokenizer.decode(tokens, skip_special_tokens=True).strip(), len(tokens))
    return out  # type: ignore[return-value]
