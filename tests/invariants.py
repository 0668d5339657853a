"""What must hold after every run that writes recommendations (issue 8), shared by the test packages.

- every recommended item is one of that user's candidates and not already in the user's history;
- ranks are 1..K without gaps (K = min(top_k, the user's candidates));
- one row per (run_date, user_id, rank) in the whole table, not only in the partition read;
- every row says why: a reason_item_id from that user's history, or none and a reason saying so.
"""

from __future__ import annotations

from collections import Counter


def recs(lake, run_date):
    """The partition as sorted (user, rank, item, score) tuples: equal lists mean equal output."""
    table = lake.read_arrow("recommendations", {"run_date": run_date})
    return sorted((r["user_id"], r["rank"], r["item_id"], round(r["score"], 5)) for r in table.to_pylist())


def assert_unique_keys(rows) -> None:
    """One row per (run_date, user_id, rank): duplicates would mean a half-replaced or doubled partition."""
    keys = Counter((r["run_date"], r["user_id"], r["rank"]) for r in rows)
    doubled = {k: n for k, n in keys.items() if n > 1}
    assert not doubled, f"duplicated (run_date, user_id, rank) rows: {list(doubled.items())[:5]}"


def assert_invariants(lake, run_date, k):
    """Check one run date's recommendations against its prompts (candidates) and the interactions."""
    from deltalake import DeltaTable

    rows = lake.read_arrow("recommendations", {"run_date": run_date}).to_pylist()
    assert_unique_keys(DeltaTable(lake.path("recommendations")).to_pyarrow_table().to_pylist())
    prompts = {r["user_id"]: r for r in lake.read_arrow("prompts", {"run_date": run_date}).to_pylist()}
    candidates: dict[str, set] = {}
    for r in lake.read_arrow("candidates", {"run_date": run_date}, columns=["user_id", "item_id"]).to_pylist():
        candidates.setdefault(r["user_id"], set()).add(r["item_id"])
    seen: dict[str, set] = {}
    for r in lake.read_arrow("interactions", columns=["user_id", "item_id"]).to_pylist():
        seen.setdefault(r["user_id"], set()).add(r["item_id"])
    by_user: dict[str, list] = {}
    for r in rows:
        by_user.setdefault(r["user_id"], []).append(r)
    assert rows, f"no recommendations for {run_date}"
    assert set(by_user) == set(prompts), "every user with a prompt row gets recommendations"
    for user, user_rows in by_user.items():
        ranks = sorted(r["rank"] for r in user_rows)
        n = min(k, len(prompts[user]["candidate_item_ids"]))
        assert ranks == list(range(1, n + 1)), f"user {user}: ranks {ranks}"
        items = [r["item_id"] for r in user_rows]
        assert len(set(items)) == len(items), f"user {user}: an item recommended twice"
        assert set(items) <= set(prompts[user]["candidate_item_ids"]), f"user {user}: item not in the prompt's candidates"
        assert set(items) <= candidates.get(user, set()), f"user {user}: item not in the candidates table"
        assert not set(items) & seen.get(user, set()), f"user {user}: recommended an item from their history"
        for r in user_rows:
            assert r["reason"], f"user {user}: a row without a reason"
            if r["reason_item_id"] is None:
                assert not r["reason"].startswith("because you bought"), f"user {user}: {r['reason']!r} names no item"
            else:
                assert r["reason_item_id"] in seen.get(user, set()), f"user {user}: reason item not in the history"
