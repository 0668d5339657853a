"""Tuning benchmark: seconds per step, tokens/s and peak memory of the LoRA recipe.

    nice -n 10 .venv/bin/python benchmarks/tuning.py --steps 5 --batch 8 --prompt-tokens 300
    nice -n 10 .venv/bin/python benchmarks/tuning.py --only bf16-answer   # one configuration

Runs the real recipe (``TuneRecipe``) on the bundled SmolLM2-135M with reranking examples of ~N tokens
built from the vendored Games titles, in four configurations: bf16 / fp32 autocast x loss on gathered
answer positions (ours) / plain ``labels=`` loss over every position. Each configuration runs in a fresh
subprocess so that its peak RSS is its own. The first step (allocator and kernel warm-up) is excluded
from the per-step time.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = ["bf16-answer", "fp32-answer", "bf16-labels", "fp32-labels"]
LETTERS = [chr(ord("A") + i) for i in range(20)]


def build_examples(tokenizer, n: int, prompt_tokens: int, seed: int = 0) -> list[dict]:
    """Reranking examples in the instructions-stage contract: history titles are added until the
    prompt reaches ~prompt_tokens; 20 lettered candidates; the answer is one letter."""
    with open(REPO / "instructrec_batch" / "sample_data" / "games_items.tsv", newline="") as f:
        titles = [row["title"][:80] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                  if row["title"]]
    rng = random.Random(seed)
    rows = []
    for u in range(n):
        candidates = rng.sample(titles, 20)
        listing = "\n".join(f"{letter}. {t}" for letter, t in zip(LETTERS, candidates))
        history: list[str] = []
        while True:
            text = (f"The user has played, oldest first: {'; '.join(history)}.\n"
                    f"Rank the candidates; answer with the letter of the one they will play next.\n{listing}")
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                   add_generation_prompt=True)
            if len(tokenizer.encode(prompt)) >= prompt_tokens:
                break
            history.append(rng.choice(titles))
        rows.append({"user_id": u, "task_form": "reranking", "template_id": "bench", "prompt": prompt,
                     "answer": rng.choice(LETTERS), "candidate_letters": LETTERS})
    return rows


def random_weights_copy(model_dir: Path, out: Path) -> Path:
    """The same architecture and tokenizer with random weights: step time and memory depend only on
    shapes, and a config + tokenizer (4 MB) travels where the 514 MB weights cannot."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(model_dir))).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(out)
    return out


def run_one(name: str, steps: int, batch: int, prompt_tokens: int, use_gpu: bool,
            model_dir: str | None, random_weights: bool) -> dict:
    import torch

    from instructrec_batch.config import PrecisionConfig, TuneConfig, load_config
    from instructrec_batch.model import checkpoint
    from instructrec_batch.model.base import base_model_dir, load_tokenizer
    from instructrec_batch.model.recipe import TuneRecipe

    precision, loss_kind = name.split("-")
    base_dir = Path(model_dir) if model_dir else base_model_dir(load_config().model)
    if random_weights:
        base_dir = random_weights_copy(base_dir, Path(tempfile.mkdtemp(prefix="tune-bench-model-")))
    records = build_examples(load_tokenizer(base_dir), batch * steps, prompt_tokens)
    cfg = TuneConfig(max_steps=steps, batch_size=batch, eval_every=0, checkpoint_every=0, max_tokens=4096,
                     bf16=precision == "bf16", use_gpu=use_gpu, log_every=1)
    with tempfile.TemporaryDirectory() as root:
        checkpoint.prepare_root(Path(root), {"bench": name}, resume=False)
        # Every configuration runs in the precision it names: a bf16 row is measured even where `auto`
        # would pick fp32 (a speed-up threshold that any timing meets forces it).
        forced = PrecisionConfig(bf16_min_speedup=1e-9) if precision == "bf16" else None
        recipe = TuneRecipe(cfg, base_dir, root, records, [], forced)
        recipe.setup()
        assert recipe.bf16 == (precision == "bf16")
        if loss_kind == "labels":
            recipe.module = LabelsLoss(recipe.model)
        step_seconds: list[float] = []
        inner = recipe._train_step

        def timed():
            if recipe.device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = inner()
            if recipe.device.type == "cuda":
                torch.cuda.synchronize()
            step_seconds.append(time.perf_counter() - t)
            return out

        recipe._train_step = timed
        summary = recipe.train()
    tokens = summary["tokens_per_second"] * summary["run_seconds"] / summary["run_steps"]
    per_step = statistics.median(step_seconds[1:]) if len(step_seconds) > 1 else step_seconds[0]
    out = {
        "config": name, "device": summary["device"], "steps": summary["run_steps"],
        "tokens_per_step": round(tokens), "s_per_step": round(per_step, 3),
        "tokens_per_s": round(tokens / per_step), "peak_rss_mb": round(summary["peak_rss_mb"]),
        "losses": [round(x, 3) for x in summary["losses"]],
    }
    if recipe.device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


class LabelsLoss:
    """The baseline: the model's own ``labels=`` loss, which projects every position onto the vocabulary."""

    def __init__(self, model):
        self.model = model

    def __call__(self, input_ids, blocks, token_rows, token_cols, token_ids, **_):
        import torch

        labels = torch.full_like(input_ids, -100)
        labels[token_rows, token_cols + 1] = token_ids  # the model shifts labels itself
        # one answer per example here, so the packed sequence is a plain right-padded one
        return self.model(input_ids=input_ids, attention_mask=(blocks >= 0).long(), labels=labels, use_cache=False).loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--gpu", action="store_true", help="train on the first CUDA device")
    parser.add_argument("--model-dir", help="a Hugging Face folder (default: the bundled SmolLM2)")
    parser.add_argument("--random-weights", action="store_true",
                        help="use --model-dir's architecture and tokenizer with random weights")
    parser.add_argument("--only", choices=CONFIGS, help="run one configuration in this process")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=CONFIGS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args.steps, args.batch, args.prompt_tokens, args.gpu,
                                 args.model_dir, args.random_weights)))
        return
    results = []
    for name in args.configs:
        cmd = [sys.executable, __file__, "--only", name, "--steps", str(args.steps), "--batch", str(args.batch),
               "--prompt-tokens", str(args.prompt_tokens)] + (["--gpu"] if args.gpu else []) \
            + (["--model-dir", args.model_dir] if args.model_dir else []) \
            + (["--random-weights"] if args.random_weights else [])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            results.append({"config": name, "failed": done.returncode})
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    print("\nconfig        s/step  tokens/s  peak RSS MB  peak GPU MB")
    for r in results:
        if "s_per_step" in r:
            print(f"{r['config']:<13} {r['s_per_step']:>6}  {r['tokens_per_s']:>8}  {r['peak_rss_mb']:>11}"
                  f"  {r.get('peak_gpu_mb', '-'):>11}")
        else:
            print(f"{r['config']:<13} {r.get('skipped') or 'failed'}")


if __name__ == "__main__":
    main()
