"""relrank: deep relative attributes in JAX/Flax (Souri, Noury & Adeli, ACCV 2016)."""

from relrank.config import Config
from relrank.configs import make_config
from relrank.errors import UserError

__all__ = ["Config", "Ranker", "UserError", "load", "make_config"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """`relrank.load` and `relrank.Ranker`, imported on first use (so `import relrank` for the Config does not import JAX)."""
    if name in ("Ranker", "load"):
        from relrank.use import ranker

        return getattr(ranker, name)
    raise AttributeError(f"module 'relrank' has no attribute {name!r}")
