"""`python -m relrank COMMAND ...`: the `relrank` command (`python -m relrank --help`)."""

import sys

from relrank.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m relrank"))
