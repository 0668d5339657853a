"""Entry point for schedulers: `python jobs/evaluate.py [--conf FILE] [--set key=value]`.

Same options as `instructrec-batch evaluate` (see --help). Runnable by spark-submit, `ray job submit -- python` or python.
"""

import sys

from instructrec_batch.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]])
