"""The scoring job: Ray Data reads a run date's prompts, an actor pool runs the model (``actor.py``, the
only place that holds a model inside Ray), top-K goes to ``recommendations``. The scorers themselves are
pure torch in ``instructrec_batch.model`` (shared with tuning and evaluation). Start Ray with
``from instructrec_batch.scoring.ray_session import ray_session``.
"""
