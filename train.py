"""Train a relative-attribute ranker: `python train.py --dataset=NAME --attr=NAME` (see --help); `relrank train`."""

import sys

from relrank.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
