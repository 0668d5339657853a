"""The template library: coverage, validation, and every template rendering for every kind of user."""

from __future__ import annotations

import itertools
import re
from types import SimpleNamespace

import pytest
import yaml

from instructrec_batch.config import InstructionsConfig
from instructrec_batch.instructions import TemplateError, load_template_library
from instructrec_batch.instructions import fields
from instructrec_batch.instructions.prompts import choose_template, render_user
from instructrec_batch.instructions.render import model_input
from instructrec_batch.instructions.templates import parse_library


@pytest.fixture(scope="module")
def library():
    return load_template_library()


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    from instructrec_batch.model.base import load_tokenizer

    return load_tokenizer(base_model_dir)


def test_library_covers_every_combination(library):
    assert library.version and len(library.templates) >= 39
    for form, p, i in itertools.product(
        ["pointwise", "pairwise", "matching", "reranking"], ["P0", "P1", "P2"], ["I0", "I1", "I2"]
    ):
        if (p, i) != ("P0", "I0"):
            assert len(library.find(form, p, i)) >= 2, (form, p, i)  # several phrasings
    assert library.get(library.default_inference).task_form == "reranking"


def _doc(**changes):
    tpl = {
        "id": "x", "task_form": "reranking", "preference": "P1", "intention": "I0",
        "answer_format": "letter", "text": "{history}\n{candidates}", "placeholders": ["history", "candidates"],
    }
    tpl.update(changes)
    return {"version": "t1", "default_inference": "x", "templates": [tpl]}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"text": "{history}\n{candidates}\n{secret}", "placeholders": ["history", "candidates", "secret"]}, "unknown placeholder"),
        ({"answer_format": None}, "missing answer_format"),
        ({"answer_format": "yes_no"}, "answers as 'letter'"),
        ({"placeholders": ["history"]}, "do not match"),
        ({"text": "{history}", "placeholders": ["history"]}, "needs ['candidates']"),
        ({"intention": "I2"}, "needs ['intention']"),
        ({"preference": "P0", "intention": "I2", "text": "{intention}\n{history}\n{candidates}", "placeholders": ["candidates", "history", "intention"]}, "must not use ['history']"),
    ],
)
def test_validation_rejects(changes, message):
    doc = _doc(**changes)
    if changes.get("answer_format", "") is None:
        del doc["templates"][0]["answer_format"]
    with pytest.raises(TemplateError, match=re.escape(message)):
        parse_library(doc)


def test_library_from_path_and_bad_yaml(tmp_path):
    good = tmp_path / "t.yaml"
    good.write_text(yaml.safe_dump(_doc()))
    assert load_template_library(str(good)).version == "t1"
    bad = tmp_path / "bad.yaml"
    bad.write_text("templates: [")
    with pytest.raises(TemplateError, match="not valid YAML"):
        load_template_library(str(bad))


USERS = {
    "rich": dict(
        history_titles=["Old Game", "Mid Game", "New Game"],
        liked=["Great co-op fun"], disliked=["Too short"], fav_category=["Racing"], fav_brand=["Nintendo"],
        has_reviews=True, intents=["cheap racing game for Switch"],
    ),
    "plain": dict(
        history_titles=["Only Game"], liked=None, disliked=None, fav_category=None, fav_brand=None,
        has_reviews=False, intents=None,
    ),
}


def _row(user_id, profile):
    return SimpleNamespace(
        user_id=user_id, cand_ids=[f"c{k}" for k in range(20)], cand_titles=[f"Candidate {k}" for k in range(20)],
        cand_ranks=list(range(1, 21)), cand_popularity=[0.01] * 20, cand_sources=["cooccurrence"] * 20,
        cand_reason_ids=["h1"] * 20, cand_reason_titles=["History 1"] * 20, teacher_preference=None, **profile,
    )


@pytest.mark.parametrize("user", sorted(USERS))
def test_every_template_renders(library, tokenizer, user):
    cfg = InstructionsConfig()
    row = _row(user, USERS[user])
    for tpl in library.templates:
        if tpl.task_form in ("reranking", "matching"):  # the inference forms: the real code path
            out = render_user(row, library, tpl, tokenizer, cfg, budget=640)
            prompt = out["prompt"]
            assert out["template_id"].split("-")[0] == tpl.id.split("-")[0]
            if tpl.task_form == "reranking":
                assert all(f">> [{letter}]\n" in prompt for letter in out["candidate_letters"])
        else:  # pointwise / pairwise: filled as build_training_examples fills them
            has_pref, has_int = USERS[user]["has_reviews"], bool(USERS[user]["intents"])
            used = choose_template(library, tpl, has_pref, has_int)
            body = used.render(
                history="\n".join(fields.history_lines(row.history_titles, 100)),
                preference=fields.preference_text(["Great"], [], [], [], 400) if has_pref else "",
                intention=fields.intention_text(row.intents or [], 400),
                candidates=fields.candidate_block(["A", "B"], ["Candidate 0", "Candidate 1"], 100),
                item=fields.field("Candidate 0", 100),
            )
            prompt = model_input(tokenizer, library.preamble, body)
        assert not re.search(r"\{\w+\}", prompt), tpl.id
        assert prompt.endswith("<|im_start|>assistant\n"), tpl.id
        if user == "plain":
            assert "Too short" not in prompt and "cheap racing" not in prompt
        if "history" in tpl.placeholders:
            assert USERS[user]["history_titles"][-1] in prompt, tpl.id


def test_plain_tokenizer_falls_back_to_answer_suffix():
    plain = SimpleNamespace(chat_template=None)
    assert model_input(plain, "Pre.", "Body").endswith("\nAnswer:")


def test_each_scorer_is_served_prompts_of_its_own_form(library):
    """The verbalizer reads lettered candidates (reranking), the likelihood scorers titles (matching):
    a pinned template always wins, the tuned model's best only in the scorer's form."""
    assert library.default_inference == "T3-P1I2-a"
    assert library.default_for("matching").id == "T2-P1I2-a"  # same preference, intention, phrasing
    assert library.serving_template("verbalizer") == "T3-P1I2-a"
    assert library.serving_template("likelihood") == library.serving_template("naive") == "T2-P1I2-a"
    assert library.serving_template("likelihood", tuned_best="T2-P1I0-b") == "T2-P1I0-b"
    assert library.serving_template("likelihood", tuned_best="T3-P1I0-b") == "T2-P1I2-a"  # wrong form
    assert library.serving_template("verbalizer", tuned_best="T3-P1I0-b") == "T3-P1I0-b"
    assert library.serving_template("likelihood", pinned="T3-P1I0-a", tuned_best="T2-P1I0-b") == "T3-P1I0-a"
    with pytest.raises(TemplateError, match="no template"):
        library.serving_template("verbalizer", pinned="T9-nope")
