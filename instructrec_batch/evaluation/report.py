"""The report folder: a Markdown summary and one PNG per protocol and population (metric by system).

Input is the long results frame (protocol, population, system, metric, value, n_users) that also goes
to the eval_runs table, so the report never shows a number the table does not hold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import per_user_ndcg, ranking_metrics
from .fusion import paired_bootstrap_ci

# Metrics in reading order; anything else sorts after them alphabetically.
_METRIC_ORDER = ["HR@1", "HR@5", "HR@10", "Recall@10", "Recall@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR"]


def _metric_key(name: str) -> tuple[int, str]:
    return (_METRIC_ORDER.index(name), name) if name in _METRIC_ORDER else (len(_METRIC_ORDER), name)


def winners(results: pd.DataFrame) -> pd.DataFrame:
    """Per (protocol, population, metric): the best system and its margin over the runner-up.
    Ties name every tied system; systems are only compared on the same users."""
    rows = []
    for (protocol, population, metric), group in results.groupby(["protocol", "population", "metric"], sort=False):
        ordered = group.sort_values(["value", "system"], ascending=[False, True])
        best = ordered["value"].iloc[0]
        tied = ordered[np.isclose(ordered["value"], best, rtol=0, atol=1e-12)]["system"].tolist()
        rest = ordered[~ordered["system"].isin(tied)]
        margin = best - rest["value"].iloc[0] if len(rest) else float("nan")
        rows.append(
            {
                "protocol": protocol,
                "population": population,
                "metric": metric,
                "winner": ", ".join(tied),
                "value": best,
                "margin": margin,
            }
        )
    return pd.DataFrame(rows)


def _table(group: pd.DataFrame) -> str:
    wide = group.pivot_table(index="system", columns="metric", values="value", aggfunc="first")
    wide = wide[sorted(wide.columns, key=_metric_key)]
    best = wide.max(axis=0)
    header = "| system | " + " | ".join(wide.columns) + " |"
    lines = [header, "|" + " --- |" * (len(wide.columns) + 1)]
    for system, row in wide.iterrows():
        cells = [f"**{v:.4f}**" if np.isclose(v, best[m], rtol=0, atol=1e-12) else f"{v:.4f}" for m, v in row.items()]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(scores: dict[str, np.ndarray], target_index: np.ndarray, baseline: str, first_column: str = "system") -> str:
    """Markdown: HR@10 and NDCG@10 per system over the same users, and each system's NDCG@10 minus the
    baseline's with a paired bootstrap 95% CI (the form in which the benchmarks report a difference)."""
    ndcg = {name: per_user_ndcg(s, target_index) for name, s in scores.items()}
    lines = [f"| {first_column} | HR@10 | NDCG@10 | NDCG@10 - {baseline} (95% CI) |", "| --- | --- | --- | --- |"]
    for name, s in scores.items():
        m = ranking_metrics(s, target_index, ks=(10,))
        vs = ""
        if name != baseline:
            diff, lo, hi = paired_bootstrap_ci(ndcg[name], ndcg[baseline])
            vs = f"{diff:+.4f} ({lo:+.4f} .. {hi:+.4f})"
        lines.append(f"| {name} | {m['HR@10']:.4f} | {m['NDCG@10']:.4f} | {vs} |")
    return "\n".join(lines)


def plot(group: pd.DataFrame, title: str, path: Path) -> None:
    """Grouped bars: one group per metric, one bar per system."""
    import matplotlib

    matplotlib.use("Agg")  # no display on batch machines
    import matplotlib.pyplot as plt

    wide = group.pivot_table(index="metric", columns="system", values="value", aggfunc="first")
    wide = wide.loc[sorted(wide.index, key=_metric_key)]
    n_metrics, n_systems = wide.shape
    width = 0.8 / max(n_systems, 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * n_metrics + 2), 4.2))
    x = np.arange(n_metrics)
    for i, system in enumerate(wide.columns):
        ax.bar(x + (i - (n_systems - 1) / 2) * width, wide[system].to_numpy(), width, label=system)
    ax.set_xticks(x, wide.index)
    ax.set_ylim(0, min(1.0, max(0.05, float(np.nanmax(wide.to_numpy())) * 1.15)))
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=min(n_systems, 3), loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    folder: Path,
    results: pd.DataFrame,
    header: dict[str, str],
    notes: list[str] | None = None,
    timings: dict[str, float] | None = None,
) -> Path:
    """Writes ``report.md`` and ``<protocol>_<population>.png`` files into ``folder``; returns the
    Markdown path. ``header`` is printed as a key/value list (run id, dataset, versions, model...)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# Evaluation report", ""]
    lines += [f"- **{key}**: {value}" for key, value in header.items()]
    lines.append("")
    main = results[results["protocol"] != "template_feedback"]
    for (protocol, population), group in main.groupby(["protocol", "population"], sort=False):
        n_users = int(group["n_users"].max())
        png = f"{protocol}_{population}.png"
        plot(group, f"{protocol} protocol, {population} ({n_users} users)", folder / png)
        lines += [f"## {protocol} protocol, {population} ({n_users} users)", "", _table(group), "", f"![{protocol} {population}]({png})", ""]
    won = winners(main)
    if len(won):
        lines += ["## Winners", "", "| protocol | users | metric | winner | value | margin over next |", "| --- | --- | --- | --- | --- | --- |"]
        for row in won.itertuples():
            margin = "" if np.isnan(row.margin) else f"{row.margin:+.4f}"
            lines.append(f"| {row.protocol} | {row.population} | {row.metric} | {row.winner} | {row.value:.4f} | {margin} |")
        lines.append("")
    feedback = results[results["protocol"] == "template_feedback"]
    if len(feedback):
        lines += ["## Template feedback (validation users)", "", _table(feedback), ""]
    if timings:
        lines += ["## Time", "", "| step | seconds |", "| --- | --- |"]
        lines += [f"| {step} | {seconds:.1f} |" for step, seconds in timings.items()]
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path
