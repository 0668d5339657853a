"""Entry point for schedulers: `python jobs/nightly.py --run-date YYYY-MM-DD [--conf FILE] [--set key=value]`.

Same options as `instructrec-batch nightly` (see --help). Runnable by spark-submit, `ray job submit -- python` or python.
"""

import sys

from instructrec_batch.cli import main

if __name__ == "__main__":
    main(["nightly", *sys.argv[1:]])
