"""Explicit preferences from an LLM teacher vs extractive review snippets, on the same users, in one run.

    .venv/bin/instructrec-batch ingest --set lake.root=/tmp/reviews-lake --set 'ingest.sources=[reviews_sample]'
    .venv/bin/python benchmarks/teacher_preferences.py --lake /tmp/reviews-lake

Leave-one-out test users of the lake who have at least one review with text before their last item.
The teacher (``preferences.model``, as the preferences stage loads it) writes each user's sentence from
their history's reviews only: the held-out item's review is never shown. Both prompt sets use the
same P2 template (the served template's phrasing with an explicit preference and no intent), the same
sampled-protocol candidates (the target among 19 seeded unseen items) and the served model and
scorer; they differ only in the preference field. Prints the teacher's cost per user (this machine,
its threads), NDCG@10 / HR@10 of both, their paired difference with a bootstrap 95% CI, and examples.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from instructrec_batch.config import load_config
from instructrec_batch.evaluation.baselines import popularity_counts, popularity_scores
from instructrec_batch.evaluation.llm import build_eval_prompts, llm_scores, load_model, served_scorer
from instructrec_batch.evaluation.protocols import leave_one_out_split, sample_users, sampled_set
from instructrec_batch.evaluation.report import paired_table
from instructrec_batch.instructions import load_template_library
from instructrec_batch.instructions.fields import clean_sentence
from instructrec_batch.instructions.teacher import review_inputs, teacher_messages
from instructrec_batch.lake import Lake
from instructrec_batch.model.base import load_scoring_model
from instructrec_batch.model.generate import generate_chats
from instructrec_batch.pipeline.stages import choose_model, read_validated_inputs, teacher_model
from instructrec_batch.retrieval import leave_one_out
from instructrec_batch.spark import get_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override (repeatable)")
    parser.add_argument("--users", type=int, default=1000, help="at most this many seeded users")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    cfg = load_config(overrides=[f"lake.root={args.lake}", *args.overrides])
    spark = get_spark(cfg.spark)
    checked = read_validated_inputs(Lake(cfg.lake, spark))
    history, _ = leave_one_out(checked.interactions, holdout=1)
    reviews = review_inputs(history, checked.items, cfg.preferences).toPandas()
    interactions = checked.interactions.select("user_id", "item_id", "position").toPandas()
    full = leave_one_out_split(interactions, "test")
    reviewers = np.intersect1d(full.user_ids.astype(str), reviews.user_id.astype(str))
    split = full.subset(sample_users(reviewers, args.users, args.seed))
    reviews = reviews.set_index("user_id").loc[split.user_ids.astype(str)].reset_index()

    # The teacher, timed on its own: model load apart from generation.
    teacher_dir, teacher_label = teacher_model(cfg)
    model, tokenizer, choice = load_scoring_model(teacher_dir, cfg.scoring.dtype, precision=cfg.precision)
    chats = [teacher_messages([dict(r.asDict() if hasattr(r, "asDict") else r) for r in rs], cfg.preferences.max_review_chars)
             for rs in reviews.reviews]
    started = time.time()
    written = generate_chats(model, tokenizer, chats, cfg.preferences.max_new_tokens, cfg.preferences.batch_size)
    gen_seconds = time.time() - started
    sentences = [clean_sentence(g.text, cfg.preferences.max_chars) for g in written]
    del model
    teacher = spark.createDataFrame(pd.DataFrame({"user_id": reviews.user_id.astype(str), "teacher_preference": sentences})
                                    .dropna(), "user_id string, teacher_preference string")

    eval_set = sampled_set(split, checked.items.select("item_id").toPandas().item_id.to_numpy(), 19, args.seed)
    served = choose_model(cfg, required=False)
    scorer = served_scorer(cfg)
    library = load_template_library(cfg.instructions.templates_path)
    serving = library.get(library.serving_template(scorer, cfg.instructions.inference_template, served.best_template_id))
    template = library.closest(serving, "P2", "I0").id
    prompts = {
        "extractive snippets": build_eval_prompts(spark, history, checked.items, None, eval_set, served.model_dir, cfg,
                                                  template),
        "LLM teacher": build_eval_prompts(spark, history, checked.items, None, eval_set, served.model_dir, cfg, template,
                                          teacher=teacher),
    }
    loaded = load_model(f"{served.name}:{served.version}", served.model_dir, cfg)
    scores = {name: llm_scores(eval_set, frame, loaded, scorer, cfg) for name, frame in prompts.items()}
    scores["popularity"] = popularity_scores(eval_set, popularity_counts(full.histories))
    spark.stop()

    n = len(split.user_ids)
    tokens = sum(g.n_new_tokens for g in written)
    print(f"\n{n} seeded test users with reviews before their held-out item (seed {args.seed}); teacher {teacher_label} "
          f"({choice.dtype}, {torch.get_num_threads()} threads), served {served.name}:{served.version}, scorer "
          f"{scorer}, template {template}")
    print(f"teacher: {gen_seconds:.1f} s for {n} users = {gen_seconds / n:.2f} s/user, {tokens / gen_seconds:.1f} new "
          f"tokens/s, {tokens / n:.1f} tokens/user; usable sentence for {sum(s is not None for s in sentences)}/{n}")
    print("\n" + paired_table(scores, eval_set.target_index, baseline="extractive snippets", first_column="preference"))
    same = np.mean([a == b for a, b in zip(prompts["extractive snippets"].prompt, prompts["LLM teacher"].prompt)])
    print(f"\nprompts identical in both sets (no usable sentence): {same:.0%}")
    for user, sentence in list(zip(reviews.user_id, sentences))[:3]:
        print(f"  {user}: {sentence!r}")


if __name__ == "__main__":
    main()
