"""The tokenizer that Spark workers load to render prompts: the class AutoTokenizer would pick, without torch."""

from __future__ import annotations

import subprocess
import sys

from transformers import AutoTokenizer

from instructrec_batch.tokenizers import load_tokenizer

TEXTS = ["Megaman & Bass", "Ｆｕｌｌｗｉｄｔｈ Pokémon  \t tabs\n\nnew lines", "<<Fake>> [B]", "<|im_start|>user\nhi<|im_end|>"]


def test_the_bundled_tokenizer_loads_without_importing_torch(base_model_dir):
    code = ("import sys; from instructrec_batch.tokenizers import load_tokenizer; "
            f"load_tokenizer({str(base_model_dir)!r}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_it_tokenizes_and_templates_exactly_as_autotokenizer(base_model_dir):
    ours, auto = load_tokenizer(base_model_dir), AutoTokenizer.from_pretrained(str(base_model_dir))
    assert type(ours) is type(auto)
    assert ours(TEXTS, add_special_tokens=False)["input_ids"] == auto(TEXTS, add_special_tokens=False)["input_ids"]
    messages = [{"role": "user", "content": t} for t in TEXTS]
    assert (ours.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            == auto.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    assert (ours.eos_token, ours.chat_template) == (auto.eos_token, auto.chat_template)
