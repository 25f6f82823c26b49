"""relrank: deep relative attributes in JAX/Flax (Souri, Noury & Adeli, ACCV 2016)."""

from relrank.config import Config, make_config
from relrank.errors import UserError

__all__ = ["Config", "Ranker", "UserError", "load", "make_config"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """`relrank.load` and `relrank.Ranker`, imported on first use (so `relrank.weights` needs no JAX)."""
    if name in ("Ranker", "load"):
        from relrank import ranker

        return getattr(ranker, name)
    raise AttributeError(f"module 'relrank' has no attribute {name!r}")
