"""The LLM teacher's inputs (which reviews, their fingerprint) and how prompts use its sentences."""

from __future__ import annotations

import pytest

from instructrec_batch.config import InstructionsConfig, PreferencesConfig
from instructrec_batch.instructions import build_prompts
from instructrec_batch.instructions.fields import clean_sentence
from instructrec_batch.instructions.teacher import current_preferences, review_inputs

SCHEMA = "user_id string, item_id string, position long, rating double, review_title string, review_text string"
PREFS = "run_date string, user_id string, text string, model string, reviews_fingerprint long"


@pytest.fixture(scope="module")
def items(spark):
    rows = [(f"i{k}", f"Game {k}", "Racing", None, None, None) for k in range(30)]
    return spark.createDataFrame(rows, "item_id string, title string, category string, brand string, "
                                       "description string, price double")


def _interactions(spark, extra=()):
    rows = [("a", f"i{p}", p, 5.0, f"title {p}", f"text {p}" if p != 2 else None) for p in range(6)]
    rows += [("b", "i10", 0, 2.0, None, "   "), ("b", "i11", 1, 4.0, None, None)]  # no review with text
    rows += list(extra)
    return spark.createDataFrame(rows, SCHEMA)


def test_the_latest_reviews_with_text_oldest_first_and_a_fingerprint_that_follows_them(spark, items):
    cfg = PreferencesConfig(max_reviews=3, max_review_chars=5)
    got = {r.user_id: r for r in review_inputs(_interactions(spark), items, cfg).collect()}
    assert set(got) == {"a"}, "a user without review text has nothing to teach from"
    a = got["a"]
    assert a.source_review_ids == ["i3", "i4", "i5"]  # newest three with text, oldest first (i2 has none)
    assert [r.title for r in a.reviews] == ["Game 3", "Game 4", "Game 5"]
    assert a.reviews[0].review_text == "text "  # capped at max_review_chars

    older = _interactions(spark, [("a", "i20", -1, 5.0, None, "an older review")])
    assert review_inputs(older, items, cfg).first().reviews_fingerprint == a.reviews_fingerprint
    edited = _interactions(spark).replace("text 5", "Text 5")  # an edit the teacher can see (first 5 chars)
    assert review_inputs(edited, items, cfg).first().reviews_fingerprint != a.reviews_fingerprint


def test_current_preferences_are_the_newest_sentence_written_from_todays_reviews(spark, items):
    inputs = review_inputs(_interactions(spark), items, PreferencesConfig())
    now = inputs.first().reviews_fingerprint
    written = spark.createDataFrame([
        ("2026-01-01", "a", "The user likes old things.", "m", now),
        ("2026-01-02", "a", "The user likes racing games.", "m", now),
        ("2026-01-09", "a", "The user likes the future.", "m", now),  # after the run date: not visible
        ("2026-01-02", "z", "The user left.", "m", 1),
    ], PREFS)
    got = current_preferences(written, inputs, "2026-01-05").collect()
    assert [(r.user_id, r.teacher_preference) for r in got] == [("a", "The user likes racing games.")]
    stale = written.where("run_date = '2026-01-01'").withColumn("reviews_fingerprint", written.reviews_fingerprint + 1)
    assert current_preferences(stale, inputs, "2026-01-05").count() == 0, "written from other reviews: not used"


def test_a_p2_prompt_states_the_teachers_sentence_instead_of_review_snippets(spark, items, base_model_dir):
    interactions = _interactions(spark)
    candidates = spark.createDataFrame([("a", f"i{20 + k}", k + 1, 1.0, "cooccurrence") for k in range(5)],
                                       "user_id string, item_id string, retrieval_rank int, retrieval_score double, "
                                       "source string")
    teacher = spark.createDataFrame([("a", "The user likes fast racing games <|im_end|> and hates grinding.")],
                                    "user_id string, teacher_preference string")
    cfg = InstructionsConfig()
    args = (interactions, items, candidates, None, str(base_model_dir), cfg)
    with_teacher = build_prompts(*args, template_id="T2-P2I0-a", teacher=teacher).first()
    snippets = build_prompts(*args, template_id="T2-P2I0-a").first()
    assert "in short <<The user likes fast racing games |im_end| and hates grinding.>>" in with_teacher.prompt
    assert "liked <<title 5>>" in snippets.prompt and "liked <<" not in with_teacher.prompt
    assert with_teacher.fingerprint != snippets.fingerprint, "a new sentence must rescore the user"
    off = build_prompts(*args[:-1], cfg.model_copy(update={"teacher_preferences": False}), template_id="T2-P2I0-a",
                        teacher=teacher).first()
    assert off.prompt == snippets.prompt


@pytest.mark.parametrize("generated, expected", [
    ("The user likes racing games. They also write long reviews.", "The user likes racing games."),
    ("  The user\nloves <<puzzles>> and co-op!", "The user loves puzzles and co-op!"),
    ("ok", None),  # fewer than three words: nothing usable
    (None, None),
])
def test_clean_sentence(generated, expected):
    assert clean_sentence(generated, 240) == expected
