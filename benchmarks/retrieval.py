"""Retrieval benchmark: candidate recall and candidates-stage time of co-occurrence, the sequential
retriever (SASRec) and their merge, every user of a lake, leave-one-out, side by side in one run.

    .venv/bin/instructrec-batch ingest --set lake.root=/tmp/full-lake --set 'ingest.sources=[games_full]'
    .venv/bin/instructrec-batch fit-retriever --set lake.root=/tmp/full-lake
    .venv/bin/python benchmarks/retrieval.py --lake /tmp/full-lake

Each user's last item is the target; candidates come from the history before it (the nightly's own
build_candidates). The retriever must have been fitted without the test items (fit_holdout >= 1).
Recall@50 is measured on each method's personal list cut at 50 (the candidates table holds 20).
NDCG@10 is the retrieval order's own (what the served list is before the model reranks it); each method
after the first is compared with the first, per user, with a paired bootstrap 95% CI.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pyspark.sql import functions as F

from instructrec_batch.config import load_config
from instructrec_batch.evaluation.fusion import paired_bootstrap_ci
from instructrec_batch.lake import Lake
from instructrec_batch.metrics import ndcg_at_ranks
from instructrec_batch.retrieval import (_personal, build_candidates, candidate_recall, leave_one_out,
                                         resolve_retriever, target_retrieval_ranks)
from instructrec_batch.spark import get_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override (repeatable)")
    parser.add_argument("--methods", default="cooccurrence,sequential,merged")
    args = parser.parse_args()
    cfg = load_config(overrides=[f"lake.root={args.lake}", *args.overrides])
    spark = get_spark(cfg.spark)
    lake = Lake(cfg.lake, spark)
    history, targets = leave_one_out(lake.read("interactions"), 1)
    history, targets = history.cache(), targets.cache()
    users = targets.select("user_id")
    n_users = targets.count()
    retriever = resolve_retriever(cfg.model.registry_dir, cfg.retrieval.sequential, min_holdout=1)
    print(f"{n_users:,} users, leave-one-out; sequential retriever {retriever.name}/{retriever.version} "
          f"(fit_holdout {retriever.fit_holdout}, {retriever.card['params']['epochs']} epochs, "
          f"loss {retriever.card['params'].get('loss', 'bce')})")
    print(f"{'method':<14} {'NDCG@10':>9} {'recall@10':>9} {'recall@20':>9} {'recall@50':>9} {'candidates s':>13}")
    ndcg = {}
    seen = history.select("user_id", "item_id").distinct()
    for method in args.methods.split(","):
        rcfg = cfg.retrieval.model_copy(update={"method": method})
        started = time.time()
        cands = build_candidates(history, users, rcfg, retriever).cache()
        cands.count()
        seconds = time.time() - started
        at = candidate_recall(cands, targets, [10, 20])
        ranks = target_retrieval_ranks(cands, targets).toPandas().sort_values("user_id")
        ndcg[method] = ndcg_at_ranks(ranks["retrieval_rank"].to_numpy(dtype=np.float64), 10)
        # Past the candidates table's 20: the personal list alone, cut at 50 (no popularity back-fill).
        deep = _personal(history, users, seen, rcfg, retriever, 50)
        deep = deep.withColumn("retrieval_rank", F.col("rank_in_source"))
        at50 = candidate_recall(deep, targets, [50])[50]
        print(f"{method:<14} {ndcg[method].mean():>9.4f} {at[10]:>9.4f} {at[20]:>9.4f} {at50:>9.4f} {seconds:>13.1f}",
              flush=True)
        cands.unpersist()
    first, *others = ndcg
    for method in others:
        diff, low, high = paired_bootstrap_ci(ndcg[method], ndcg[first])
        print(f"NDCG@10 {method} - {first}: {diff:+.4f} (95% CI {low:+.4f} .. {high:+.4f}, {len(ndcg[first]):,} users paired)")


if __name__ == "__main__":
    main()
