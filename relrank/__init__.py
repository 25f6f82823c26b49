"""relrank: deep relative attributes in JAX/Flax (Souri, Noury & Adeli, ACCV 2016)."""

from relrank.config import Config, make_config
from relrank.errors import UserError
from relrank.ranker import Ranker, load

__all__ = ["Config", "Ranker", "UserError", "load", "make_config"]
__version__ = "0.1.0"
