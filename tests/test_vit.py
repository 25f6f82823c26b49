"""ViT, DINOv2 and CLIP ports of HF transformers' layouts, against `ViTModel`, `Dinov2Model` and `CLIPVisionModel` built
from small configs with random weights: the class token's features agree to 1e-4 of their scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from relrank.model.vit import ViT, ViTSpec, from_hf_clip, from_hf_vit

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers", reason="the HF reference models: pip install transformers")


def randomise(model):
    """Every parameter away from its initial value (LayerNorms and layer scales start at 1 and 0)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model.eval()


@pytest.mark.parametrize("kind", ["vit", "dinov2", "clip"])
def test_vit_port_of_the_hf_layouts_matches_transformers(kind):
    common = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_channels=3)
    if kind == "vit":
        config = transformers.ViTConfig(**common, intermediate_size=128, image_size=32, patch_size=16)
        reference = randomise(transformers.ViTModel(config, add_pooling_layer=False))
        spec = ViTSpec(patch=16, width=64, depth=2, heads=4, mlp=128, native_size=32, eps=config.layer_norm_eps)
    elif kind == "clip":
        config = transformers.CLIPVisionConfig(**common, intermediate_size=128, image_size=32, patch_size=16)
        reference = randomise(transformers.CLIPVisionModel(config))
        spec = ViTSpec(patch=16, width=64, depth=2, heads=4, mlp=128, native_size=32, eps=config.layer_norm_eps,
                       pre_norm=True, activation="quick_gelu")
    else:
        config = transformers.Dinov2Config(**common, mlp_ratio=2, image_size=28, patch_size=14, layerscale_value=1.0)
        reference = randomise(transformers.Dinov2Model(config))
        spec = ViTSpec(patch=14, width=64, depth=2, heads=4, mlp=128, native_size=28, eps=config.layer_norm_eps,
                       layer_scale=True)
    tensors = {k: v.numpy() for k, v in reference.state_dict().items()}
    model = ViT(spec, rngs=nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    params.update((from_hf_clip if kind == "clip" else from_hf_vit)(tensors, spec))
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    size = spec.native_size
    images = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        output = reference(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2)))
        expected = (output.pooler_output if kind == "clip" else output.last_hidden_state[:, 0]).numpy()
    got = np.asarray(model.features(jnp.asarray(images)))
    assert got.shape == expected.shape == (2, 64)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), np.abs(got - expected).max()


HUB_NAMES = [(r"^layers\.(\d+)\.", r"encoder.layer.\1."), (r"attention\.q_proj", "attention.attention.query"),
             (r"attention\.k_proj", "attention.attention.key"), (r"attention\.v_proj", "attention.attention.value"),
             (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "intermediate.dense"),
             (r"mlp\.fc2", "output.dense")]


def test_vit_port_reads_the_hub_files_names_as_well():
    """The files on the Hub keep transformers 4's names (`encoder.layer.N.attention.attention.query`, ...):
    the same tensors under those names port to the same parameters."""
    import re

    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                    image_size=32, patch_size=16)
    tensors = {k: v.numpy() for k, v in randomise(transformers.ViTModel(config, add_pooling_layer=False)).state_dict().items()}
    hub = {}
    for name, value in tensors.items():
        for pattern, replacement in HUB_NAMES:
            name = re.sub(pattern, replacement, name)
        hub[name] = value
    assert "encoder.layer.1.attention.attention.value.weight" in hub and "encoder.layer.0.output.dense.bias" in hub
    spec = ViTSpec(patch=16, width=64, depth=2, heads=4, mlp=128, native_size=32)
    ours, theirs = from_hf_vit(tensors, spec), from_hf_vit(hub, spec)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(a, b)
