"""Tiny synthetic instruction examples in the contract shape of the instructions stage."""

from __future__ import annotations

import random
import string

import pandas as pd
import pytest

LETTERS = list(string.ascii_uppercase[:20])
WORDS = ["quest", "racer", "legend", "kart", "shadow", "galaxy", "puzzle", "arena", "knight", "pixel"]


def make_examples(tokenizer_dir, n: int, seed: int, n_candidates: int = 20, forms=("reranking",)) -> pd.DataFrame:
    """Reranking examples with a learnable rule (the target is the candidate whose title ends with
    'Deluxe'), plus pointwise yes/no ones when asked. `prompt` has the chat template applied."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rng = random.Random(seed)
    rows = []
    for u in range(n):
        form = forms[u % len(forms)]
        # Distinct ids, as real examples have (the serving scorer refuses duplicate candidates).
        items = rng.sample(range(1000), n_candidates)
        titles = [f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {i}" for i in items]
        target = rng.randrange(n_candidates)
        titles[target] += " Deluxe"
        letters = LETTERS[:n_candidates]
        if form == "reranking":
            listing = "\n".join(f"{letter}. {title}" for letter, title in zip(letters, titles))
            question = f"The user played Mario Kart. Which candidate will they play next?\n{listing}\nAnswer with the letter."
            answer = letters[target]
        elif form == "matching":  # names the target; candidates are ranked by title likelihood
            question = "The user played Mario Kart. Name the game they play next."
            answer = titles[target]
        else:
            pick = rng.randrange(n_candidates)
            question = f"The user played Mario Kart. Would they enjoy {titles[pick]}? Answer yes or no."
            answer = "yes" if pick == target else "no"
        prompt = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
        rows.append({
            "user_id": u, "task_form": form, "template_id": f"{form}-1", "prompt": prompt, "answer": answer,
            "target_item_id": items[target], "candidate_item_ids": items, "candidate_letters": letters,
            "candidate_titles": titles,
        })
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def train_examples(tiny_model_dir) -> pd.DataFrame:
    return make_examples(tiny_model_dir, 48, seed=1, n_candidates=5, forms=("reranking", "pointwise"))


@pytest.fixture(scope="session")
def val_examples(tiny_model_dir) -> pd.DataFrame:
    return make_examples(tiny_model_dir, 6, seed=2, n_candidates=20)


@pytest.fixture(scope="session")
def val_matching(tiny_model_dir) -> pd.DataFrame:
    """Validation in the likelihood scorer's form (the default tune.validation_scorer)."""
    return make_examples(tiny_model_dir, 6, seed=2, n_candidates=20, forms=("matching",))


@pytest.fixture(scope="session")
def learnable_model_dir(tmp_path_factory, tiny_model_dir):
    """The tiny Llama re-initialised with a larger weight scale. With the default 0.02 the tied output
    embedding rows are so short that no hidden state can move a logit by more than ~0.6, so the loss is
    stuck near ln(vocab) however well LoRA learns; at 0.2 there is room to show learning."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM
    import torch

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(str(tiny_model_dir))
    config.initializer_range = 0.2
    out = tmp_path_factory.mktemp("learnable-model")
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(out)
    return out
