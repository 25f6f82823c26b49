"""Evaluate trained rankers: `python evaluate.py --workdir=W [--json]` (see --help); `relrank evaluate`."""

import sys

from relrank.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
