"""Entry point for schedulers: `python jobs/build_prompts.py --run-date YYYY-MM-DD [--conf FILE] [--set key=value]`.

Same options as `instructrec-batch build-prompts` (see --help). Runnable by spark-submit, `ray job submit -- python` or python.
"""

import sys

from instructrec_batch.cli import main

if __name__ == "__main__":
    main(["build-prompts", *sys.argv[1:]])
