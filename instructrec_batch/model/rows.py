"""One prompts row checked and tokenized into what a scorer needs, or rejected with a reason.

Everything that can be wrong with a single row (ids/letters/titles of different lengths, a letter that
is not one token, a prompt past the length limit...) is found here, before any model call, so that a
bad row becomes a quarantine record and never breaks the batch it arrived in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..instructions.fields import as_list

SCORERS = ("verbalizer", "likelihood", "naive")


class MalformedRow(ValueError):
    """A prompts row that cannot be scored; the message is the quarantine reason."""


@dataclass
class PreparedRow:
    user_id: str
    template_id: str | None
    item_ids: list[str]
    is_fallback: bool
    prompt_ids: list[int] = field(default_factory=list)  # empty for fallback rows
    letter_ids: list[int] = field(default_factory=list)  # verbalizer: the answer token of each candidate
    title_ids: list[list[int]] = field(default_factory=list)  # likelihood/naive: each candidate's continuation

    @property
    def n_input_tokens(self) -> int:
        return len(self.prompt_ids)


class RowPreparer:
    """Tokenizes rows for one scorer; caches the letter -> token id map (the same 20 letters every row)."""

    def __init__(self, tokenizer, scorer: str, max_input_tokens: int, max_title_tokens: int):
        if scorer not in SCORERS:
            raise ValueError(f"unknown scorer {scorer!r}; choose one of {', '.join(SCORERS)}")
        self.tokenizer = tokenizer
        self.scorer = scorer
        self.max_input_tokens = max_input_tokens
        self.max_title_tokens = max_title_tokens
        self._letters: dict[str, int | None] = {}

    def tokenize_prompts(self, rows: list[dict]) -> list[list[int] | None]:
        """Prompt token ids for many rows in ONE tokenizer call (the fast tokenizer batches in Rust;
        row-by-row calls cost as much as the model's forward pass on a GPU). None where there is no prompt."""
        wanted = [i for i, r in enumerate(rows) if not r.get("is_fallback") and isinstance(r.get("prompt"), str) and r["prompt"]]
        out: list[list[int] | None] = [None] * len(rows)
        if wanted:
            encoded = self.tokenizer([rows[i]["prompt"] for i in wanted], add_special_tokens=False)["input_ids"]
            for i, ids in zip(wanted, encoded):
                out[i] = ids
        return out

    def __call__(self, row: dict, prompt_ids: list[int] | None = None) -> PreparedRow:
        user_id = row.get("user_id")
        if user_id is None:
            raise MalformedRow("user_id is null")
        item_ids = as_list(row.get("candidate_item_ids"))
        if not item_ids:
            raise MalformedRow("candidate_item_ids is empty")
        if any(i is None for i in item_ids):
            raise MalformedRow("candidate_item_ids contains a null")
        if len(set(item_ids)) != len(item_ids):
            raise MalformedRow("candidate_item_ids contains duplicates")
        prepared = PreparedRow(str(user_id), row.get("template_id"), [str(i) for i in item_ids], bool(row.get("is_fallback")))
        if prepared.is_fallback:
            return prepared  # popularity order is the answer; nothing to tokenize
        prompt = row.get("prompt")
        if not prompt:
            raise MalformedRow("prompt is null or empty for a non-fallback user")
        # The prompt already carries the chat template's special tokens: add none of our own.
        if prompt_ids is None:
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        prepared.prompt_ids = prompt_ids
        if len(prepared.prompt_ids) > self.max_input_tokens:
            raise MalformedRow(f"prompt has {len(prepared.prompt_ids)} tokens, more than max_input_tokens={self.max_input_tokens}")
        if self.scorer == "verbalizer":
            prepared.letter_ids = self._letter_ids(row.get("candidate_letters"), len(item_ids))
        else:
            prepared.title_ids = self._title_ids(row.get("candidate_titles"), len(item_ids))
        return prepared

    def _letter_ids(self, letters, n: int) -> list[int]:
        letters = as_list(letters)
        if len(letters) != n:
            raise MalformedRow(f"{len(letters)} candidate_letters for {n} candidate_item_ids")
        if len(set(letters)) != n:
            raise MalformedRow("candidate_letters contains duplicates")
        ids = []
        for letter in letters:
            if letter not in self._letters:
                tokens = self.tokenizer(letter, add_special_tokens=False)["input_ids"] if letter else []
                self._letters[letter] = tokens[0] if len(tokens) == 1 else None
            if self._letters[letter] is None:
                raise MalformedRow(f"candidate letter {letter!r} is not a single token")
            ids.append(self._letters[letter])
        return ids

    def _title_ids(self, titles, n: int) -> list[list[int]]:
        titles = as_list(titles)
        if len(titles) != n:
            raise MalformedRow(f"{len(titles)} candidate_titles for {n} candidate_item_ids")
        if any(not t for t in titles):
            raise MalformedRow("a candidate title is null or empty")
        encoded = self.tokenizer(titles, add_special_tokens=False)["input_ids"]
        # Long titles are cut: the first tokens carry the identity of an item, the tail is edition noise,
        # and a cap keeps the packed sequence bounded.
        return [ids[: self.max_title_tokens] for ids in encoded]
