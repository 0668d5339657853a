"""Leave-one-out evaluation: protocols, baselines, fusion fitting, the eval_runs table and a report.

The evaluate job is ``evaluation.job.run``; the ranking metrics live in ``instructrec_batch.metrics``
(tuning's validation uses them too).
"""
