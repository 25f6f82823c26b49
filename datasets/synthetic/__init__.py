"""Synthetic shapes: relrank's embedded default dataset."""
