"""Whole-job scaling benchmark (issue: Ray Data batch scoring): users/s of `instructrec-batch score`
on growing samples of the Amazon Games users, to show that its cost grows linearly.

    .venv/bin/python benchmarks/score_job.py --users 1000,5000

For each size, in one run and with the same config: a fresh lake under a temporary folder, `ingest`
of that many seeded Games users (full set from ../shared/data), then `nightly` (candidates -> prompts ->
score) through the real CLI, exactly as a scheduler would call it. Figures are read back from the
lake's `runs` table (what each stage recorded), not from this script's clock, and printed side by side
with seconds per user relative to the smallest size (1.00 = perfectly linear).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "instructrec_batch.cli"]


def stage_rows(lake_root: Path) -> dict[str, dict]:
    """The last succeeded row of each stage: seconds and the row counts the stage recorded."""
    import deltalake

    runs = deltalake.DeltaTable(str(lake_root / "runs")).to_pandas()
    done = runs[runs.status == "succeeded"].sort_values("ended_at").groupby("stage").tail(1)
    return {
        r.stage: {"seconds": (r.ended_at - r.started_at).total_seconds(), **json.loads(r.row_counts or "{}")}
        for r in done.itertuples()
    }


def run_size(n_users: int, workdir: Path, conf: list[str], overrides: list[str], run_date: str) -> dict:
    lake = workdir / f"lake-{n_users}"
    common = [a for c in conf for a in ("--conf", c)] + [a for s in [f"lake.root={lake}", *overrides] for a in ("--set", s)]
    # Co-occurrence candidates: a fresh lake has no fitted sequential retriever, and the score stage's
    # cost (what this measures) does not depend on which retriever proposed the candidates.
    ingest = ["--set", "ingest.sources=[games_full]", "--set", f"ingest.max_users={n_users}",
              "--set", "retrieval.method=cooccurrence"]
    for args in (["ingest", *common, *ingest], ["nightly", "--run-date", run_date, *common, *ingest]):
        print("$ instructrec-batch", " ".join(args), flush=True)
        subprocess.run([*CLI, *args], cwd=REPO, check=True)
    return stage_rows(lake)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", default="1000,5000", help="comma-separated sample sizes")
    ap.add_argument("--conf", action="append", default=None, help="config files (default conf/local.yaml)")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override")
    ap.add_argument("--run-date", default="2026-11-22")
    ap.add_argument("--workdir", default=None, help="where the lakes go (default: a temporary folder)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.users.split(",")]
    conf = args.conf or [str(REPO / "conf" / "local.yaml")]

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = {n: run_size(n, Path(tmp), conf, args.overrides, args.run_date) for n in sizes}

    base = sizes[0]
    base_spu = results[base]["score"]["seconds"] / results[base]["score"]["users"]
    print(f"\n{'users':>7} {'candidates s':>13} {'prompts s':>10} {'score s':>9} {'score users/s':>14} "
          f"{'tokens/s':>9} {'s/user vs ' + str(base):>14}")
    for n in sizes:
        st = results[n]
        score = st["score"]
        spu = score["seconds"] / score["users"]
        print(f"{score['users']:>7} {st['candidates']['seconds']:>13.1f} {st['prompts']['seconds']:>10.1f} "
              f"{score['seconds']:>9.1f} {score['users'] / score['seconds']:>14.3f} "
              f"{score['prompt_tokens'] / score['seconds']:>9.0f} {spu / base_spu:>14.2f}")
    print("\nscore seconds include Ray start-up, actor model loads and the Delta commit; "
          "1.00 in the last column is perfectly linear cost")


if __name__ == "__main__":
    main()
