"""Finished (or interrupted) runs on disk: which folders hold one, and their configs."""

from __future__ import annotations

import json
import os

from relrank.config import Config
from relrank.errors import UserError

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


def is_run(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def find_runs(workdir: str) -> list[str]:
    """`workdir` itself if it holds a run, else the runs below it (one per attribute, seed, ...), sorted."""
    if not os.path.isdir(workdir):
        raise UserError(f"workdir {workdir} does not exist")
    if is_run(workdir):
        return [workdir]
    runs = []
    for folder, dirs, _ in os.walk(workdir):
        dirs.sort()
        if is_run(folder):
            runs.append(folder)
            dirs[:] = []  # a run's own folders hold no runs
    if not runs:
        raise UserError(f"workdir {workdir} holds no checkpoint (nor do its sub-directories)")
    return runs


def read_config(run_dir: str) -> Config:
    try:
        with open(os.path.join(run_dir, CONFIG_FILE)) as f:
            return Config.from_json(json.load(f))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise UserError(f"cannot read {os.path.join(run_dir, CONFIG_FILE)}: {error}") from None
