"""Scoring benchmark: the same users and prompts through every scorer and precision.

    nice -n 10 .venv/bin/python benchmarks/scoring.py --users 30 --naive-users 3 --pipeline-users 50

Builds realistic reranking prompts (~300-600 tokens, 20 lettered candidates, chat template) from the
Amazon Games 2018 titles in ../shared/data with a small builder of its own, then reports users/s for
naive, likelihood (packed shared prefix) and verbalizer in fp32 and bf16, their ratios, achieved FLOP/s
against a large torch.matmul timed in the same run, and users/s of the whole Ray Data scoring job (``scoring.job.run``).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Only torch/transformers/pandas at the top: the scorer part also runs on hosts without the project's
# other dependencies (a bare GPU box); config, Ray and Delta are imported where they are needed.
from instructrec_batch.config import ScoringConfig  # noqa: E402
from instructrec_batch.model.frame import score_frame  # noqa: E402
from instructrec_batch.model.rows import RowPreparer  # noqa: E402

LETTERS = [chr(ord("A") + i) for i in range(20)]
SYSTEM = "You are a recommender. You read a user's history and pick the item they will want next."


# ── prompts: a tiny in-benchmark builder (the real one is the Spark instructions stage) ──────────
def load_games(data_dir: Path) -> tuple[dict[str, str], list[list[str]]]:
    items = pd.read_csv(data_dir / "items.tsv", sep="\t", dtype=str, quoting=3)
    titles = {i: t[:100] for i, t in zip(items.item_id, items.title.fillna("")) if t}
    seqs = pd.read_csv(data_dir / "sequences.tsv", sep="\t", dtype=str, quoting=3)
    return titles, [s.split() for s in seqs.item_ids_chronological]


def build_prompts(tokenizer, titles, sequences, n_users: int, seed: int, min_tokens=300, max_tokens=600) -> pd.DataFrame:
    """Reranking rows of validation users: the second-to-last item (the validation target; the last
    one stays unseen, as in tuning) among 19 random others, history trimmed (oldest first) so the
    prompt lands in [min_tokens, max_tokens] where the history allows."""
    rng = random.Random(seed)
    pool = list(titles)
    users = [s[:-1] for s in sequences if len(s) >= 7 and all(i in titles for i in s)]
    rng.shuffle(users)
    rows = []
    for u, seq in enumerate(users):
        if len(rows) == n_users:
            break
        history, target = seq[:-1], seq[-1]
        cands = [target] + rng.sample([i for i in pool if i not in seq][:5000], 19)
        rng.shuffle(cands)
        listing = "\n".join(f"{l}. {titles[c]}" for l, c in zip(LETTERS, cands))
        for start in range(len(history)):  # drop the oldest history first until the prompt fits
            seen = "\n".join(f"- {titles[i]}" for i in history[start:])
            user = (
                f"The user bought these games, oldest first:\n{seen}\n\n"
                f"Candidates:\n{listing}\n\nWhich candidate will the user buy next? Answer with its letter."
            )
            prompt = tokenizer.apply_chat_template(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
            n = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if n <= max_tokens:
                break
        if n < min_tokens or n > max_tokens:
            continue
        rows.append(
            {
                "user_id": f"g{u}", "template_id": "bench-rerank", "prompt": prompt, "candidate_item_ids": cands,
                "candidate_letters": LETTERS, "candidate_titles": [titles[c] for c in cands], "n_prompt_tokens": n,
                "n_history_items": len(history) - start, "is_fallback": False, "target_item_id": target,
            }
        )
    return pd.DataFrame(rows)


# ── costs ────────────────────────────────────────────────────────────────────────────────────────
def forward_costs(frame: pd.DataFrame, tokenizer, scorer: str, max_title_tokens: int) -> tuple[int, int]:
    """(tokens through the body, positions through the vocabulary projection) for one pass of `scorer`."""
    prep = RowPreparer(tokenizer, "likelihood", 10**6, max_title_tokens)
    body = head = 0
    for record in frame.to_dict("records"):
        row = prep(record)
        p, t = len(row.prompt_ids), [len(x) for x in row.title_ids]
        if scorer == "verbalizer":
            body, head = body + p, head + 1
        elif scorer == "likelihood":
            body, head = body + p + sum(t), head + sum(t)
        else:  # naive: one sequence per candidate; logits only for the title tail
            body, head = body + len(t) * p + sum(t), head + sum(x + 1 for x in t)
    return body, head


def matmul_peak(dtype: torch.dtype, device: str, seconds: float = 2.0) -> float:
    """Measured FLOP/s of a large square matmul: the practical ceiling for this machine right now
    (on a shared CPU it moves with the neighbours' load, so it is re-measured next to every timing)."""
    n = 8192 if device == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    torch.matmul(a, b)  # warm-up (kernel selection, page faults)
    _sync(device)
    reps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.matmul(a, b)
        reps += 1
        _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - started)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def load_model(model_dir: Path, dtype: str, device: str, random_weights: bool):
    """The model in `dtype` on `device`. random_weights: same architecture from config.json, weights
    untrained (for machines the weights cannot be copied to; the cost of a forward pass is the same)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    if random_weights:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(model_dir)), dtype=torch_dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype)
    return model.to(device).eval()


def time_scorer(model, tokenizer, frame, scorer, batch_tokens) -> tuple[float, pd.DataFrame]:
    """(seconds, the scores) of one scorer over the frame's users, after a one-user warm-up."""
    sc = ScoringConfig(batch_tokens=batch_tokens)
    score_frame(frame.head(1), model, tokenizer, sc, scorer)  # warm-up
    started = time.perf_counter()
    scored = score_frame(frame, model, tokenizer, sc, scorer, chunk_users=len(frame))
    return time.perf_counter() - started, scored


def ndcg_at_10(frame: pd.DataFrame, scored: pd.DataFrame) -> np.ndarray:
    """Per-user NDCG@10 of the held-out item (the evaluation's metric code), users in frame order."""
    from instructrec_batch.metrics import per_user_ndcg

    wide = scored.assign(col=scored.groupby("user_id").cumcount()).pivot(index="user_id", columns="col", values="score")
    wide = wide.loc[frame.user_id]
    target = np.array([list(c).index(t) for c, t in zip(frame.candidate_item_ids, frame.target_item_id)])
    return per_user_ndcg(wide.to_numpy(), target, k=10)


# ── the whole job ────────────────────────────────────────────────────────────────────────────────
def pipeline_users_per_s(frame: pd.DataFrame, model_dir: Path, threads: int, batch_tokens: int) -> dict:
    from instructrec_batch.config import load_config
    from instructrec_batch.lake import Lake
    from instructrec_batch.scoring import job as scoring_job
    from instructrec_batch.scoring.ray_session import ray_session

    import pyarrow as pa

    from instructrec_batch.lake.schemas import PROMPTS

    run_date = "2026-01-01"
    # One logical CPU more than the actor takes: Ray Data's read/write tasks need a slot of their own,
    # or they wait forever behind an actor that holds every CPU.
    prompts = pa.Table.from_pylist([{**r, "run_date": run_date} for r in frame.to_dict("records")], schema=PROMPTS.schema)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(overrides=[f"lake.root={tmp}/lake", f"ray.num_cpus={threads + 1}", f"scoring.num_cpus_per_actor={threads}", f"scoring.batch_tokens={batch_tokens}"])
        lake = Lake(cfg.lake)
        lake.write_arrow(prompts, "prompts", mode="overwrite", partition={"run_date": run_date})
        with ray_session(cfg.ray):
            return scoring_job.run(cfg, lake, run_date, str(model_dir), "smollm2-135m-instruct", "base")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=30, help="users for likelihood and verbalizer")
    ap.add_argument("--naive-users", type=int, default=3, help="users for the (slow) naive baseline")
    ap.add_argument("--pipeline-users", type=int, default=50, help="users for the whole scoring job (0: skip)")
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--scorers", default="likelihood,verbalizer", help="besides naive (--naive-users)")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "amazon-games-2018"))
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model-dir", default=None, help="HF folder (default: the bundled SmolLM2)")
    ap.add_argument("--random-weights", action="store_true", help="timing only: untrained weights of the same shape")
    ap.add_argument("--ndcg-tolerance", type=float, default=0.01, help="largest bf16 - fp32 NDCG@10 called the same")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.model_dir:
        model_dir = Path(args.model_dir)
    else:
        from instructrec_batch.config import load_config
        from instructrec_batch.model.base import base_model_dir

        model_dir = base_model_dir(load_config().model)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    titles, sequences = load_games(Path(args.data_dir))
    frame = build_prompts(tokenizer, titles, sequences, max(args.users, args.pipeline_users), args.seed)
    users = frame.head(args.users)
    print(f"{len(frame)} users, prompt tokens mean {frame.n_prompt_tokens.mean():.0f} "
          f"(min {frame.n_prompt_tokens.min()}, max {frame.n_prompt_tokens.max()}), 20 candidates, {args.threads} threads")

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    scorers = (("naive",) if args.naive_users else ()) + tuple(args.scorers.split(","))
    print(f"device {args.device}{' (random weights: timings only)' if args.random_weights else ''}")
    results, ndcg = [], {}
    for dtype in args.dtypes.split(","):
        model = load_model(model_dir, dtype, args.device, args.random_weights)
        cfg_m = model.config
        n_params = sum(p.numel() for p in model.parameters())
        n_embed = cfg_m.vocab_size * cfg_m.hidden_size
        for scorer in scorers:
            subset = users.head(args.naive_users) if scorer == "naive" else users
            peak = matmul_peak(dtypes[dtype], args.device)
            seconds, scored = time_scorer(model, tokenizer, subset, scorer, args.batch_tokens)
            if scorer != "naive":
                ndcg[(dtype, scorer)] = ndcg_at_10(subset, scored)
            body, head = forward_costs(subset, tokenizer, scorer, ScoringConfig().max_title_tokens)
            # Matmul FLOPs: 2 x non-embedding params per body token + 2 x vocab x hidden per projected
            # position (attention's quadratic term left out: ~15% more at 500 tokens).
            flops = 2 * (n_params - n_embed) * body + 2 * n_embed * head
            results.append(
                {
                    "dtype": dtype, "scorer": scorer, "users": len(subset), "seconds": seconds,
                    "users_per_s": len(subset) / seconds, "tokens_per_s": body / seconds,
                    "gflop_per_s": flops / seconds / 1e9,
                    "gflop_per_s_2PT": 2 * n_params * body / seconds / 1e9,  # the brief's 2 x params x tokens
                    "peak_gflop_per_s": peak / 1e9,
                    "pct_peak": 100 * flops / seconds / peak,
                }
            )
        del model

    table = pd.DataFrame(results)
    pd.set_option("display.width", 200)
    print("\npeak = a large square torch.matmul in the same dtype, timed just before each row")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    ups = {(r["dtype"], r["scorer"]): r["users_per_s"] for r in results}
    print("\nratios (users/s):")
    for dtype in args.dtypes.split(","):
        for scorer in [s for s in scorers if s != "naive"] if args.naive_users else ():
            print(f"  {dtype}: {scorer} / naive = {ups[(dtype, scorer)] / ups[(dtype, 'naive')]:.1f}x")
    if {"fp32", "bf16"} <= set(args.dtypes.split(",")):
        for scorer in scorers:
            print(f"  {scorer}: bf16 / fp32 = {ups[('bf16', scorer)] / ups[('fp32', scorer)]:.2f}x")
    if {"fp32", "bf16"} <= set(args.dtypes.split(",")):
        # Ranking must not change in substance with the dtype: the same users' NDCG@10, paired. "Same"
        # means the whole 95% CI of bf16 - fp32 lies within +-tolerance, not just its mean.
        from instructrec_batch.evaluation.fusion import paired_bootstrap_ci

        print(f"\nranking agreement on {len(users)} validation users (NDCG@10 of the held-out item, "
              f"tolerance {args.ndcg_tolerance}):")
        for scorer in [s for s in scorers if s != "naive"]:
            fp32, bf16 = ndcg[("fp32", scorer)], ndcg[("bf16", scorer)]
            diff = bf16.mean() - fp32.mean()
            _, low, high = paired_bootstrap_ci(bf16, fp32)
            verdict = "same" if -args.ndcg_tolerance <= low and high <= args.ndcg_tolerance else "NOT SHOWN SAME"
            print(f"  {scorer}: fp32 {fp32.mean():.4f}, bf16 {bf16.mean():.4f}, bf16 - fp32 {diff:+.4f} "
                  f"(95% CI {low:+.4f}..{high:+.4f}: {verdict}); users with equal NDCG@10 {np.mean(np.isclose(fp32, bf16)):.0%}")
    if args.device == "cpu":
        from instructrec_batch.model.device import choose_precision, model_shapes

        choice = choose_precision("auto", "cpu", *model_shapes(model_dir), None, 1.2)
        print(f"\ndtype auto on this host, {args.threads} threads: {choice.dtype} (matmul of the model's shapes: "
              f"fp32 {choice.fp32_ms:.2f} ms, bf16 {choice.bf16_ms:.2f} ms; bf16 needs >= 1.2x)")
    if args.pipeline_users and args.device == "cpu":
        summary = pipeline_users_per_s(frame.head(args.pipeline_users), model_dir, args.threads, args.batch_tokens)
        print(f"\nscoring job (Ray Data, 1 actor x {args.threads} CPUs, default scorer and dtype): "
              f"{summary['users']} users in {summary['seconds']:.1f} s = {summary['users_per_s']:.2f} users/s, "
              f"{summary['prompt_tokens_per_s']:.0f} prompt tokens/s (includes Ray start-up of the actor and model load)")


if __name__ == "__main__":
    main()
