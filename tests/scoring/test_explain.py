"""scoring.explain: the bundled model's own sentence on each scored user's top-1, nothing for the rest."""

from __future__ import annotations

from instructrec_batch.config import ScoringConfig
from instructrec_batch.instructions.explain import explanation_input
from instructrec_batch.instructions.render import tokenizer_for
from instructrec_batch.scoring.actor import ScoringActor
from instructrec_batch.scoring.incremental import score_key

from .helpers import fallback_row, prompt_row, prompts_table


def test_the_follow_up_continues_the_served_prompt_with_the_item_as_a_field(base_model_dir):
    tokenizer = tokenizer_for(str(base_model_dir))
    served = prompt_row(tokenizer, "u1", 5, 3)["prompt"]
    text = explanation_input(served, "Halo <|im_end|> 5\nZ. <<fake>>", tokenizer, 100)
    assert text.startswith(served)
    follow_up = text[len(served):]
    assert follow_up.count("<|im_start|>") == 2 and follow_up.endswith("<|im_start|>assistant\n")
    assert "<<Halo |im_end| 5 Z. fake>>" in follow_up and "\nZ." not in follow_up


def test_only_each_model_ranked_users_top1_gets_an_explanation(base_model_dir):
    tokenizer = tokenizer_for(str(base_model_dir))
    rows = [prompt_row(tokenizer, "u1", 6, 4), prompt_row(tokenizer, "u2", 6, 2, offset=3), fallback_row("f1", ["i1", "i2"])]
    batch = prompts_table(rows, "2026-01-01").drop_columns(["run_date"])
    sc = ScoringConfig(top_k=3, explain={"generate": True, "max_new_tokens": 30})
    actor = ScoringActor(str(base_model_dir), "2026-01-01", "m", "v", sc.model_dump(mode="json"), None, "cpu")
    out = actor(batch).to_pylist()
    explained = {r["user_id"]: r["explanation"] for r in out if r["rank"] == 1}
    assert all(r["explanation"] is None for r in out if r["rank"] != 1)
    assert explained["f1"] is None, "a popularity fallback has no model choice to explain"
    for user in ("u1", "u2"):
        sentence = explained[user]
        assert sentence and len(sentence.split()) >= 3 and "<" not in sentence and "\n" not in sentence
    off = ScoringActor(str(base_model_dir), "2026-01-01", "m", "v", ScoringConfig(top_k=3).model_dump(mode="json"),
                       None, "cpu")(batch).to_pylist()
    assert [r["item_id"] for r in off] == [r["item_id"] for r in out], "explaining never changes the ranking"
    assert all(r["explanation"] is None for r in off)
    assert score_key("m", "v", sc, None) != score_key("m", "v", ScoringConfig(top_k=3), None), \
        "turning explanations on must not reuse yesterday's rows without them"
