"""Recipes, model presets, and the Config they resolve to with a dataset and flags (`make_config`)."""

from relrank.configs.resolve import Resolved, make_config, resolve

__all__ = ["Resolved", "make_config", "resolve"]
