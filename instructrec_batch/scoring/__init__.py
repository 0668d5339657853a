"""Scoring: the scorers (pure torch), in-process scoring of prompts frames, and the Ray Data job."""

from .frame import score_frame, top_k
from .pipeline import score_run
from .ray_session import ray_session

__all__ = ["ray_session", "score_frame", "score_run", "top_k"]
