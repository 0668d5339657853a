"""The follow-up turn that asks the scoring model why it chose a user's top-1 (scoring.explain).

The explanation continues the user's own served prompt: the model has just read the history, the need
and the candidates, so the follow-up only names the chosen item (its cleaned title inside a << >>
field, as in every prompt) and asks for one sentence. The chat template's own rendering of the two
extra turns is used, so the follow-up is well formed for whichever chat model serves.
"""

from __future__ import annotations

from . import fields

QUESTION = "In one sentence, say why {item} suits this user, from their history and needs above."
_PLACEHOLDER = "\x00served prompt\x00"


def explanation_input(prompt: str, title: str | None, tokenizer, max_chars: int) -> str:
    """The served ``prompt`` (already in the chat template, ending with the assistant's turn) followed
    by the answer ``title`` and a question about it, ending with a new assistant turn."""
    item = fields.field(title, max_chars)
    first = [{"role": "user", "content": _PLACEHOLDER}]
    follow_up = [{"role": "assistant", "content": item}, {"role": "user", "content": QUESTION.format(item=item)}]
    before = tokenizer.apply_chat_template(first, tokenize=False, add_generation_prompt=True)
    after = tokenizer.apply_chat_template(first + follow_up, tokenize=False, add_generation_prompt=True)
    if not after.startswith(before):
        raise ValueError("this chat template does not render a conversation as its first turn plus the rest")
    return prompt + after[len(before):]
