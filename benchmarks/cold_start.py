"""Cold start as product search: users with a stated need and no history, ranked by the model from an
intention-only (P0) prompt, against popularity and plain keyword matching, side by side in one run.

    .venv/bin/python benchmarks/cold_start.py --lake /tmp/full-lake --set model.registry_dir=/tmp/models --users 300

Seeded test users of the lake (leave-one-out: the last item is the target) lose their whole history;
each gets one intent written the way tuning writes specific intentions (instructions/intention.py:
up to three distinctive words of the target's title, and its category when the data has one), and
the sampled protocol's candidates (the target among 19 seeded unseen items). The prompts come from the
nightly's own build_prompts, so these users take its cold-start path. The query is built from the
target's own title, so keyword matching is the baseline the model has to be read against; the report
says how much of the title the queries carry.
"""

from __future__ import annotations

import argparse
import random
import re
import time

import numpy as np
import pandas as pd

from instructrec_batch.config import load_config
from instructrec_batch.evaluation.baselines import popularity_counts, popularity_scores
from instructrec_batch.evaluation.llm import build_eval_prompts, llm_scores, load_model, served_scorer
from instructrec_batch.evaluation.protocols import leave_one_out_split, sample_users, sampled_set
from instructrec_batch.evaluation.report import paired_table
from instructrec_batch.instructions import load_template_library
from instructrec_batch.instructions.intention import title_keywords
from instructrec_batch.lake import Lake
from instructrec_batch.pipeline.stages import choose_model, read_validated_inputs
from instructrec_batch.spark import get_spark

_WORD = re.compile(r"[a-z0-9][a-z0-9'+&-]*")


def query_for(user_id: str, title: str, category: str | None, seed: int) -> str:
    words = title_keywords(title, random.Random(f"{seed}:{user_id}"))
    return ", ".join([*words, *([category] if category else [])])


def keyword_scores(candidates: np.ndarray, queries: list[str], titles: dict[str, str]) -> np.ndarray:
    """How many query words each candidate's title contains (ties: the pessimistic metric counts them)."""
    out = np.zeros(candidates.shape)
    for row, query in enumerate(queries):
        wanted = set(_WORD.findall(query.lower()))
        for col, item in enumerate(candidates[row]):
            out[row, col] = len(wanted & set(_WORD.findall((titles.get(item) or "").lower())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override (repeatable)")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    cfg = load_config(overrides=[f"lake.root={args.lake}", *args.overrides])
    spark = get_spark(cfg.spark)
    checked = read_validated_inputs(Lake(cfg.lake, spark))
    interactions = checked.interactions.select("user_id", "item_id", "position").toPandas()
    full = leave_one_out_split(interactions, "test")
    split = full.subset(sample_users(full.user_ids, args.users, args.seed))
    items = checked.items.select("item_id", "title", "category").toPandas()
    titles, categories = dict(zip(items.item_id, items.title)), dict(zip(items.item_id, items.category))
    eval_set = sampled_set(split, items.item_id.to_numpy(), 19, args.seed)
    queries = [query_for(u, titles[t], categories.get(t), args.seed) for u, t in zip(split.user_ids, split.targets)]
    share = [len(set(_WORD.findall(q.lower())) & set(title_keywords(titles[t], random.Random(0), k=99)))
             / max(1, len(title_keywords(titles[t], random.Random(0), k=99))) for q, t in zip(queries, split.targets)]

    model = choose_model(cfg, required=False)
    scorer = served_scorer(cfg)
    template = load_template_library(cfg.instructions.templates_path).serving_template(
        scorer, cfg.instructions.inference_template, model.best_template_id)
    intents = spark.createDataFrame(pd.DataFrame({"user_id": split.user_ids.astype(str), "text": queries}))
    no_history = checked.interactions.limit(0)
    prompts = build_eval_prompts(spark, no_history, checked.items, intents, eval_set, model.model_dir, cfg, template)
    assert prompts["cold_start"].all(), "every user should take the cold-start path"
    started = time.time()
    loaded = load_model(f"{model.name}:{model.version}", model.model_dir, cfg)
    rows = {"model (P0 prompt)": llm_scores(eval_set, prompts, loaded, scorer, cfg)}
    seconds = time.time() - started
    rows["popularity"] = popularity_scores(eval_set, popularity_counts(full.histories))
    rows["keyword match"] = keyword_scores(eval_set.candidates, queries, titles)
    spark.stop()

    print(f"\n{len(split.user_ids)} seeded test users (seed {args.seed}) without history, 1 target + 19 unseen "
          f"items; model {model.name}:{model.version}, scorer {scorer}, template {prompts['template_id'].iloc[0]}; "
          f"{seconds:.0f} s for the model pass ({len(split.user_ids) / seconds:.2f} users/s)")
    print(f"queries: {np.mean([len(q.split(',')) for q in queries]):.1f} terms; they hold {np.mean(share):.0%} of the "
          f"target title's distinctive words on average, all of them for {np.mean(np.array(share) >= 1):.0%} of users")
    print("\n" + paired_table(rows, eval_set.target_index, baseline="popularity"))
    print(f"\nexample query: {queries[0]!r} for {titles[split.targets[0]]!r}")


if __name__ == "__main__":
    main()
