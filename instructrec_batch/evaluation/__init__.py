"""Leave-one-out evaluation: metrics, protocols, baselines, the eval_runs table and a report.

``run_evaluate`` is imported lazily: the metrics are used by tuning, which should not pay for Spark.
"""

from .metrics import ranking_metrics, strict_ranks, target_ranks

__all__ = ["ranking_metrics", "strict_ranks", "target_ranks", "run_evaluate", "EvalResult"]


def __getattr__(name):
    if name in ("run_evaluate", "EvalResult"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
