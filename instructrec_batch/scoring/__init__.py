"""Scoring: the scorers (pure torch), in-process scoring of prompts frames, and the Ray Data job.

``score_frame``/``top_k`` need only torch and pandas (evaluation and GPU benchmarks import them on
machines without Ray or Delta); ``score_run`` is imported on first use. Start Ray with
``from instructrec_batch.scoring.ray_session import ray_session`` (not re-exported here: the name would
clash with its own submodule).
"""

from .frame import score_frame, top_k

__all__ = ["score_frame", "score_run", "top_k"]


def __getattr__(name: str):
    if name == "score_run":
        from .pipeline import score_run

        return score_run
    raise AttributeError(name)
