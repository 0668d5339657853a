"""Model-signal benchmark: does the published model add anything to the order it reranks, and does a
variant of its score or prompt add more? Validation users of the retrieval protocol (the tune job's own
fusion set, ``evaluation.fusion.fusion_validation_set``), side by side in one run:

- ``served``: the served score, the mean log-probability of each candidate's title after the prompt;
- ``pmi``: served - a * prior, the prior being the same title's score after the prompt without the
  user's history (a title the model finds likely for anyone says little about this user);
- ``hint``: the prompt also lists the retriever's first k titles ("another recommender suggests"),
  the hint line of published LLM rerankers.

Each row: NDCG@10 of the score alone, of the fused list (rank weight 1, popularity weight 0, the model
weight of ``tune.fusion_model_weights`` that is best on these users, so the column is optimistic the
way the tune job's own pick is) and the fused list's paired difference from the retrieval order with a
bootstrap 95% CI. Only users whose item was retrieved get a model pass (every list scores 0 on the
others); the means are over all users, as the evaluate job reports them.

    .venv/bin/python benchmarks/model_signal.py --lake /tmp/full-lake --set model.registry_dir=/tmp/full-models \\
        --set 'ingest.sources=[games_full]' --users 3000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from instructrec_batch.config import load_config
from instructrec_batch.evaluation.baselines import retrieval_order_scores
from instructrec_batch.evaluation.fusion import (fit_fusion, fusion_validation_set, paired_bootstrap_ci, rank_matrix,
                                                 validation_model_scores)
from instructrec_batch.evaluation.llm import llm_scores, load_model
from instructrec_batch.instructions import load_template_library
from instructrec_batch.instructions.fields import history_lines
from instructrec_batch.lake import Lake
from instructrec_batch.metrics import per_user_ndcg
from instructrec_batch.model.base import base_model_dir
from instructrec_batch.model.fusion import fuse
from instructrec_batch.model.registry import resolve
from instructrec_batch.pipeline.stages import read_validated_inputs
from instructrec_batch.spark import spark_session

HINT_INTRO = "Another recommender suggests, best first:"


def history_span(prompt: str, text: str) -> tuple[int, int]:
    """Where the template's history block (its text before {history}, and the rendered lines) starts
    and where the text after it begins, in one rendered prompt."""
    head, tail = text.split("{history}")
    start, end = prompt.find(head), prompt.rfind(tail)
    if start < 0 or end < start or "{" in head + tail:
        raise ValueError("the prompt was not rendered from a template whose only field is {history}")
    return start, end


def without_history(prompts: pd.DataFrame, texts: dict[str, str]) -> pd.DataFrame:
    def strip(row) -> str:
        start, end = history_span(row.prompt, texts[row.template_id])
        return row.prompt[:start] + row.prompt[end:].lstrip("\n")
    return prompts.assign(prompt=[strip(r) for r in prompts.itertuples()])


def with_hint(prompts: pd.DataFrame, texts: dict[str, str], k: int, max_chars: int) -> pd.DataFrame:
    def add(row) -> str:
        _, end = history_span(row.prompt, texts[row.template_id])
        hint = "\n".join([HINT_INTRO, *history_lines(list(row.candidate_titles)[:k], max_chars)])
        return f"{row.prompt[:end]}\n{hint}{row.prompt[end:]}"
    return prompts.assign(prompt=[add(r) for r in prompts.itertuples()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override (repeatable)")
    parser.add_argument("--users", type=int, default=3000, help="validation users (tune.fusion_users)")
    parser.add_argument("--prior-weight", type=float, default=0.5, help="a in served - a * prior")
    parser.add_argument("--hint-items", type=int, default=5, help="retriever titles listed in the hint")
    args = parser.parse_args()
    # Every user whose item was retrieved gets a model pass here (the tune job scores a subset): the means
    # below are over all users, and an unscored user would count as a miss.
    cfg = load_config(overrides=[f"lake.root={args.lake}", f"tune.fusion_users={args.users}",
                                 f"tune.fusion_model_users={args.users}", *args.overrides])

    started = time.time()
    with spark_session(cfg.spark) as spark:
        checked = read_validated_inputs(Lake(cfg.lake, spark))
        data = fusion_validation_set(spark, checked.interactions, checked.items, checked.intents,
                                     str(base_model_dir(cfg.model)), cfg)
    es = data.eval_set
    print(f"{len(es)} validation users, {len(data.scorable)} with their item among the {cfg.retrieval.method} "
          f"pool of {cfg.retrieval.pool_depth}, {len(data.model_scored)} scored on their content shortlist "
          f"({time.time() - started:.0f} s)")
    version = resolve(cfg.model)
    loaded = load_model(f"{version.name}/{version.version}", str(version.merged_dir), cfg)
    library = load_template_library(cfg.instructions.templates_path)
    texts = {t: library.get(t).text for t in data.prompts["template_id"].unique()}

    def scores(prompts: pd.DataFrame) -> tuple[np.ndarray, float]:
        began = time.time()
        score = lambda p: llm_scores(data.model_scored, p, loaded, data.scorer, cfg)  # noqa: E731
        matrix = validation_model_scores(data, prompts, score)
        return matrix, time.time() - began

    served, served_s = scores(data.prompts)
    prior, prior_s = scores(without_history(data.prompts, texts))
    hint, hint_s = scores(with_hint(data.prompts, texts, args.hint_items, cfg.instructions.max_title_chars))
    pmi = served.copy()
    scored = np.isfinite(served)  # unscored (-inf) and padding (NaN) stay as they are
    pmi[scored] = served[scored] - args.prior_weight * prior[scored]
    variants = {"served": (served, served_s), f"pmi (a={args.prior_weight})": (pmi, served_s + prior_s),
                f"hint (top {args.hint_items})": (hint, hint_s)}

    ranks, target = rank_matrix(es), es.target_index
    no_popularity = np.zeros(ranks.shape)
    retrieval = per_user_ndcg(retrieval_order_scores(es), target)
    print(f"model {version.name}/{version.version}, scorer {data.scorer}; retrieval order NDCG@10 {retrieval.mean():.4f}")
    print(f"{'variant':<16} {'alone':>7} {'fused':>7} {'weight':>6} {'fused - retrieval (95% CI)':>32} {'model s':>8} "
          f"{'unscored':>8}")
    scored_rows = es.has_users(data.model_scored.user_ids)
    for name, (matrix, seconds) in variants.items():
        # The tune job's own grid and tie-break, popularity held at 0, the model always in.
        params, _ = fit_fusion(matrix, ranks, no_popularity, target,
                               [w for w in cfg.tune.fusion_model_weights if w > 0], [0.0])
        fused, weight = per_user_ndcg(fuse(matrix, ranks, no_popularity, params), target), params.model_weight
        diff, low, high = paired_bootstrap_ci(fused, retrieval)
        # A prompt past the token limit is quarantined, not scored: its user then counts as a miss.
        unscored = int((~np.isfinite(matrix[scored_rows]) & ~np.equal(es.candidates[scored_rows], None)).any(axis=1).sum())
        print(f"{name:<16} {per_user_ndcg(matrix, target).mean():>7.4f} {fused.mean():>7.4f} {weight:>6} "
              f"{diff:>+10.4f} ({low:+.4f} .. {high:+.4f}) {' ':>4} {seconds:>8.0f} {unscored:>8}")


if __name__ == "__main__":
    main()
