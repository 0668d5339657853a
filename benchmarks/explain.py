"""Cost of ``scoring.explain.generate``: the same users scored by one ScoringActor with explanations off
and on, side by side in one run.

    .venv/bin/python benchmarks/explain.py --model-dir <registry>/instructrec-games/v0001/merged --users 24

Prompts come from benchmarks/scoring.py's builder (Games validation users, ~300-600 tokens, 20 lettered
candidates). Prints seconds per user for both, the ratio, and three users' explanations.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyarrow as pa
from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from scoring import build_prompts, load_games  # noqa: E402

from instructrec_batch.config import ScoringConfig  # noqa: E402
from instructrec_batch.lake.schemas import PROMPTS  # noqa: E402
from instructrec_batch.scoring.actor import ScoringActor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="the served model's merged folder")
    ap.add_argument("--users", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "amazon-games-2018"))
    args = ap.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    titles, sequences = load_games(Path(args.data_dir))
    frame = build_prompts(tokenizer, titles, sequences, args.users, seed=3)
    batch = pa.Table.from_pandas(frame[[f.name for f in PROMPTS.schema if f.name in frame.columns]], preserve_index=False)
    seconds = {}
    for generate in (False, True):
        sc = ScoringConfig(top_k=10, num_cpus_per_actor=args.threads, explain={"generate": generate})
        actor = ScoringActor(args.model_dir, "2026-01-01", "m", "v", sc.model_dump(mode="json"), None, "cpu")
        actor(batch.slice(0, 2))  # warm-up
        started = time.time()
        out = actor(batch).to_pylist()
        seconds[generate] = time.time() - started
        print(f"explain.generate={generate}: {len(frame)} users in {seconds[generate]:.1f} s = "
              f"{seconds[generate] / len(frame):.2f} s/user", flush=True)
    print(f"explanations add {(seconds[True] - seconds[False]) / len(frame):.2f} s/user "
          f"({seconds[True] / seconds[False]:.2f}x the scoring alone)")
    for row in [r for r in out if r["rank"] == 1][:3]:
        print(f"  {row['user_id']}: {row['explanation']!r}")


if __name__ == "__main__":
    main()
