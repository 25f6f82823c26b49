"""A trained ranker as a `jax.export` artifact: uint8 images [N, S, S, 3] -> scores [N, attributes], with the
parameters and the preprocessing baked in, for CPU and CUDA, any N. Loading it needs `jax` (with
`flatbuffers`) and numpy, not relrank or flax: the README's "Export" section has the whole loader."""

from __future__ import annotations

import json

EXPORT_PLATFORMS = ("cpu", "cuda")


def export_ranker(ranker, out: str, source: str = "") -> dict:
    """Write `out` (the serialised export) and `out`.json (what it scores and how); returns that JSON's content."""
    import jax
    import jax.numpy as jnp

    from relrank import __version__
    from relrank.model.network import scores

    size = ranker.config.image_size
    params = jax.device_get(ranker.params)  # constants of the exported program
    batch, = jax.export.symbolic_shape("n")
    exported = jax.export.export(jax.jit(lambda pixels: scores(ranker.network, params, pixels)),
                                 platforms=EXPORT_PLATFORMS)(jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8))
    with open(out, "wb") as f:
        f.write(exported.serialize())
    about = dict(attributes=list(ranker.attrs), image_size=size, input="uint8 RGB [N, S, S, 3], S = image_size, "
                 "resized by the caller", output="float32 scores [N, attributes], higher = more",
                 preprocessing=ranker.config.to_json()["preprocessing"], platforms=list(EXPORT_PLATFORMS),
                 source_checkpoint=source, step=ranker.step, model=ranker.config.model, relrank_version=__version__,
                 jax_version=jax.__version__)
    with open(out + ".json", "w") as f:
        json.dump(about, f, indent=2)
    return about
