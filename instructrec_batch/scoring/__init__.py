"""Scoring: the scorers (pure torch), in-process scoring of prompts frames, and the Ray Data job.

``score_frame``/``top_k`` need only torch and pandas (evaluation and GPU benchmarks import them on
machines without Ray or Delta); the Ray job's names are imported on first use.
"""

from .frame import score_frame, top_k

__all__ = ["ray_session", "score_frame", "score_run", "top_k"]


def __getattr__(name: str):
    if name == "score_run":
        from .pipeline import score_run

        return score_run
    if name == "ray_session":
        from .ray_session import ray_session

        return ray_session
    raise AttributeError(name)
