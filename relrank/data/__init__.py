"""Pairs, prepared datasets, image decoding, batch plans and the streaming input pipeline."""
