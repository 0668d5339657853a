"""Leave-one-out evaluation: metrics, protocols, baselines, the eval_runs table and a report."""

from .metrics import ranking_metrics, strict_ranks, target_ranks

__all__ = ["ranking_metrics", "strict_ranks", "target_ranks"]
