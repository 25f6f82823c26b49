"""Spreading work over devices (sharding) and over processes (jax.distributed)."""
