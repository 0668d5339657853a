"""`instructrec-batch demo`: the newcomer's tour on the bundled sample, no cluster, GPU or network.

ingest -> models (the registry's latest, else a fitted retriever and a short tuning run) -> nightly for the run date -> a few
users' histories and top-K titles -> a few users buy their top pick overnight -> the next date's
nightly, which scores only the users whose inputs changed -> one SQL query over the output.
"""

from __future__ import annotations

import logging
import textwrap
import time
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from ..config import Config
from ..errors import ModelNotFoundError
from ..lake import Lake
from ..logs import event
from ..sql import run_sql
from . import commands
from .nightly import run_nightly

log = logging.getLogger(__name__)

DEMO_QUERY = """SELECT r.user_id, r.rank, i.title, round(r.score, 3) AS score, r.reason
FROM latest_recommendations r JOIN items i ON r.item_id = i.item_id
WHERE r.rank <= 3 ORDER BY r.user_id, r.rank LIMIT 9"""


def _banner(text: str) -> None:
    print(f"\n{'═' * 8} {text} {'═' * max(0, 70 - len(text))}", flush=True)


def ensure_model(cfg: Config, spark=None) -> str:
    from ..model.registry import resolve

    if cfg.model.version == "base":
        return "base (untuned)"
    try:
        found = resolve(cfg.model)
        return f"{found.name}/{found.version} (from the registry)"
    except ModelNotFoundError:
        if not cfg.nightly.tune_if_missing:
            raise
    event(log, "demo: no tuned model in the registry; tuning one now", max_steps=cfg.tune.max_steps,
          budget_minutes=cfg.tune.time_budget_minutes)
    made = commands.tune(cfg, spark)
    return f"{made.name}/{made.version} (tuned just now)"


def ensure_retriever(cfg: Config, spark=None) -> str:
    """The sequential retriever that retrieval.method needs: the registry's, else one fitted now (on the
    bundled sample, seconds) before tuning, whose fusion fit retrieves with it."""
    from ..retrieval import retriever_for

    try:
        found = retriever_for(cfg.retrieval, cfg.model.registry_dir)
    except ModelNotFoundError:
        if not cfg.nightly.fit_retriever_if_missing:
            raise
        event(log, "demo: no sequential retriever in the registry; fitting one now", method=cfg.retrieval.method)
        made = commands.fit_retriever(cfg, spark)
        return f"{made.name}/{made.version} (fitted just now)"
    if found is None:
        return f"none needed (retrieval.method={cfg.retrieval.method})"
    return f"{found.name}/{found.version} (from the registry)"


def show_users(lake: Lake, run_date: str, n_users: int = 3) -> None:
    items = lake.read_arrow("items", columns=["item_id", "title"]).to_pydict()
    title = dict(zip(items["item_id"], items["title"]))
    recs = lake.read_arrow("recommendations", {"run_date": run_date}).to_pylist()
    inter = lake.read_arrow("interactions", columns=["user_id", "item_id", "position"]).to_pylist()
    by_user: dict[str, list] = {}
    for r in recs:
        by_user.setdefault(r["user_id"], []).append(r)
    chosen = sorted(u for u, rows in by_user.items() if not rows[0]["is_fallback"])[:n_users]
    history: dict[str, list] = {u: [] for u in chosen}
    for r in inter:
        if r["user_id"] in history:
            history[r["user_id"]].append((r["position"], r["item_id"]))
    short = lambda s: textwrap.shorten(s or "?", 70)  # noqa: E731
    for user in chosen:
        print(f"\nuser {user}")
        print("  recently bought:")
        for _, item in sorted(history[user])[-5:]:
            print(f"    · {short(title.get(item))}")
        print("  recommended:")
        for r in sorted(by_user[user], key=lambda r: r["rank"])[:5]:
            print(f"    {r['rank']:>2}. {short(title.get(r['item_id']))}  (score {r['score']:.3f})")
            print(f"        {textwrap.shorten(r.get('reason') or '', 66)}")


def buy_top_picks(lake: Lake, run_date: str, n_users: int) -> list[str]:
    """Append, for ``n_users`` scored users, an interaction with their rank-1 item: what the upstream
    system would deliver overnight. Returns those users."""
    from ..lake.schemas import INTERACTIONS

    recs = lake.read_arrow("recommendations", {"run_date": run_date})
    firsts = recs.filter(pc.and_(pc.equal(recs["rank"], 1), pc.invert(recs["is_fallback"]))).sort_by("user_id")
    buyers = firsts.slice(0, n_users).to_pylist()
    inter = lake.read_arrow("interactions", columns=["user_id", "position"])
    last = dict(zip(*inter.group_by("user_id").aggregate([("position", "max")]).to_pydict().values()))
    rows = [{"user_id": r["user_id"], "item_id": r["item_id"], "position": last[r["user_id"]] + 1} for r in buyers]
    lake.write_arrow(pa.Table.from_pylist(rows, schema=INTERACTIONS.schema), "interactions", mode="append")
    return [r["user_id"] for r in buyers]


def _print_summary(summary: dict | None) -> None:
    if summary:
        print("scoring summary: " + ", ".join(f"{k}={v}" for k, v in summary.items() if k != "fusion"))


def run_demo(cfg: Config, run_date: str) -> None:
    from ..spark import spark_session

    # One Spark session for the whole tour: on the bundled sample a cold JVM costs more than the
    # work (the candidates and prompts stages took 49 s in a fresh JVM, 21 s in a warm one), and its
    # idle memory is small beside the 24 GB the demo is sized for (README, "Two commands").
    started = time.time()
    _banner("1/5 ingest: bundled sample -> Delta lake")
    with spark_session(cfg.spark) as spark:
        _tour(cfg, run_date, spark, started)


def _tour(cfg: Config, run_date: str, spark, started: float) -> None:
    commands.ingest(cfg, run_date, spark)
    _banner("2/5 models: the sequential retriever, then the language model")
    print(f"retriever: {ensure_retriever(cfg, spark)}")
    print(f"model: {ensure_model(cfg, spark)}")
    _banner(f"3/5 nightly for {run_date}: candidates -> prompts (Spark) -> score (Ray)")
    if cfg.nightly.score_users == "sample":
        print(f"candidates learn from every user; {cfg.nightly.sample_users} of them (nightly.sample_users) get prompts and scores")
    _print_summary(run_nightly(cfg, run_date, spark=spark))
    lake = Lake(cfg.lake)
    _banner("4/5 results")
    show_users(lake, run_date)
    next_date = (date.fromisoformat(run_date) + timedelta(days=1)).isoformat()
    _banner(f"5/5 the next night, {next_date}: only users whose inputs changed are scored")
    buyers = buy_top_picks(lake, run_date, n_users=5)
    print(f"overnight, {len(buyers)} users bought their top pick: {', '.join(buyers)}")
    summary = run_nightly(cfg, next_date, spark=spark)
    _print_summary(summary)
    if summary:
        print(f"\n{summary['users_reused']} of {summary['users']} users had unchanged inputs and kept "
              f"{run_date}'s rows; {summary['users_scored']} were scored again in {summary['seconds']:.0f}s "
              "(--full scores everyone)")
    print(f"\nSQL (instructrec-batch sql \"...\"):\n{DEMO_QUERY}\n")
    from ..tables import format_table

    print(format_table(run_sql(lake, DEMO_QUERY)))
    print(f"\ndemo finished in {time.time() - started:.0f}s. Lake: {lake.root}; try:\n"
          f"  .venv/bin/instructrec-batch sql \"SELECT run_date, stage, status, row_counts FROM runs\"")
