"""Hand-made prompts rows for the scoring tests: real chat-template prompts over a tiny model."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from instructrec_batch.lake.schemas import PROMPTS

LETTERS = [chr(ord("A") + i) for i in range(20)]
TITLES = [
    "Super Mario Odyssey", "The Legend of Zelda: Breath of the Wild", "Halo 5: Guardians", "Minecraft",
    "Forza Horizon 4", "Stardew Valley", "Dark Souls III", "Portal 2", "Celeste", "Hades",
    "Mario Kart 8 Deluxe", "Animal Crossing", "Gran Turismo Sport", "FIFA 19", "Tetris Effect",
]


def prompt_row(tokenizer, user_id: str, n_candidates: int, history: int, offset: int = 0) -> dict:
    """A reranking row in the prompts contract: history of `history` titles, candidates lettered A...; the
    prompt is the final model input (chat template with the generation prompt)."""
    items = [f"i{offset + j}" for j in range(n_candidates)]  # distinct even when titles repeat
    titles = [TITLES[(offset + j) % 15] for j in range(n_candidates)]
    letters = LETTERS[:n_candidates]
    seen = "; ".join(TITLES[(offset + 7 + h) % 15] for h in range(history))
    listing = "\n".join(f"{l}. {t}" for l, t in zip(letters, titles))
    user = f"The user played: {seen}.\nWhich candidate will they play next?\n{listing}\nAnswer with one letter."
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    return {
        "user_id": user_id,
        "template_id": "rerank-implicit",
        "prompt": prompt,
        "candidate_item_ids": items,
        "candidate_letters": letters,
        "candidate_titles": titles,
        "n_prompt_tokens": len(tokenizer(prompt, add_special_tokens=False)["input_ids"]),
        "n_history_items": history,
        "is_fallback": False,
        "fingerprint": fingerprint(prompt, items),
    }


def fingerprint(prompt: str | None, items: list[str]) -> str:
    """Stands in for the prompts stage's hash (instructions/prompts.py): changes when the inputs do."""
    return hashlib.sha256(repr((prompt, items)).encode()).hexdigest()


def fallback_row(user_id: str, items: list[str]) -> dict:
    return {
        "user_id": user_id, "template_id": None, "prompt": None, "candidate_item_ids": items,
        "candidate_letters": LETTERS[: len(items)], "candidate_titles": [TITLES[0]] * len(items),
        "n_prompt_tokens": 0, "n_history_items": 0, "is_fallback": True, "fingerprint": fingerprint(None, items),
    }


def prompts_table(rows: list[dict], run_date: str) -> pa.Table:
    return pa.Table.from_pylist([{**r, "run_date": run_date} for r in rows], schema=PROMPTS.schema)
