"""Entry point for schedulers: `python jobs/preferences.py --run-date YYYY-MM-DD [--conf FILE] [--set key=value]`.

Same options as `instructrec-batch preferences` (see --help). Runnable by spark-submit, `ray job submit -- python` or python.
"""

import sys

from instructrec_batch.cli import main

if __name__ == "__main__":
    main(["preferences", *sys.argv[1:]])
