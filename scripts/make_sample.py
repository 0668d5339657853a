"""Cut the vendored sample (run once, offline; the output is committed under instructrec_batch/sample_data).

  python scripts/make_sample.py --shared ../shared/data --users 2000 --seed 13
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "instructrec_batch" / "sample_data"
REVIEW_CATEGORIES = {"Video_Games", "Toys_and_Games", "Software", "Electronics"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    games = Path(args.shared) / "amazon-games-2018"
    OUT.mkdir(parents=True, exist_ok=True)

    with open(games / "sequences.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    header, body = rows[0], rows[1:]
    chosen = sorted(random.Random(args.seed).sample(body, args.users), key=lambda r: int(r[0]))
    used = {i for r in chosen for i in r[2].split()}
    with open(OUT / "games_sequences.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(chosen)
    with open(games / "items.tsv", newline="") as f:
        items = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    with open(OUT / "games_items.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(items[0])
        w.writerows(r for r in items[1:] if r[0] in used)

    reviews = Path(args.shared) / "amazon-reviews-2023-sample"
    with open(OUT / "reviews_2023.jsonl", "w") as out:
        for name in ("ucsd_multicat_training.jsonl", "ucsd_multicat_validation.jsonl", "ucsd_multicat_test.jsonl"):
            for line in open(reviews / name):
                if json.loads(line)["category"] in REVIEW_CATEGORIES:
                    out.write(line)
    print(f"wrote {args.users} users, {len(used)} items and reviews to {OUT}")


if __name__ == "__main__":
    main()
