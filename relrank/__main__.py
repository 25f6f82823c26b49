"""Use a trained ranker from the command line: `python -m relrank {score,saliency,embed} --help`."""

import sys

from relrank.cli import use_main

if __name__ == "__main__":
    sys.exit(use_main())
