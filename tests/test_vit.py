"""ViT, DINOv2 and CLIP ports against references with random weights: HF transformers' `ViTModel`, `Dinov2Model`
and `CLIPVisionModel` built from small configs (at the native size and, ViT, at another, where the position
embeddings are interpolated), and plain-PyTorch torchvision and OpenAI CLIP ViTs with those libraries' parameter
names: the features agree to 1e-4 of their scale. timm's layout (timm does not import beside the CPU torch
wheel: it needs torchvision) is the HF reference's tensors under timm's names, which must port to the same
parameters; so are the Hub's transformers-4 names."""

import dataclasses
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from relrank.model.vit import ViT, ViTSpec
from relrank.model.vit_ports import port_vit

from conftest import jit_features, ported_module

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers", reason="the HF reference models: pip install transformers")

COMMON = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_channels=3)


def randomise(model):
    """Every parameter away from its initial value (LayerNorms and layer scales start at 1 and 0)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model.eval()


def reference(kind: str):
    """(HF model with random weights, the matching ViTSpec)."""
    if kind == "vit":
        config = transformers.ViTConfig(**COMMON, intermediate_size=128, image_size=32, patch_size=16)
        return (randomise(transformers.ViTModel(config, add_pooling_layer=False)),
                ViTSpec(patch=16, width=64, depth=2, heads=4, mlp=128, native_size=32, eps=config.layer_norm_eps))
    if kind == "clip":
        config = transformers.CLIPVisionConfig(**COMMON, intermediate_size=128, image_size=32, patch_size=16)
        return (randomise(transformers.CLIPVisionModel(config)),
                ViTSpec(patch=16, width=64, depth=2, heads=4, mlp=128, native_size=32, eps=config.layer_norm_eps,
                        pre_norm=True, activation="quick_gelu"))
    config = transformers.Dinov2Config(**COMMON, mlp_ratio=2, image_size=28, patch_size=14, layerscale_value=1.0)
    return (randomise(transformers.Dinov2Model(config)),
            ViTSpec(patch=14, width=64, depth=2, heads=4, mlp=128, native_size=28, eps=config.layer_norm_eps,
                    layer_scale=True))


def state(model) -> dict:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def ported(spec: ViTSpec, tensors: dict) -> tuple[ViT, str]:
    backbone, layout = port_vit(tensors, spec)
    return ported_module(lambda: ViT(spec, rngs=nnx.Rngs(0)), backbone), layout


@pytest.mark.parametrize("kind,size", [("vit", 32), ("vit", 64), ("dinov2", 28), ("clip", 32)])
def test_vit_port_of_the_hf_layouts_matches_transformers(kind, size):
    hf, spec = reference(kind)
    model, layout = ported(spec, state(hf))
    assert layout == ("hf_clip" if kind == "clip" else "hf")
    images = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    pixels = torch.from_numpy(images.transpose(0, 3, 1, 2))
    with torch.no_grad():
        output = hf(pixel_values=pixels, **({"interpolate_pos_encoding": True} if size != spec.native_size else {}))
        expected = (output.pooler_output if kind == "clip" else output.last_hidden_state[:, 0]).numpy()
    got = np.asarray(jit_features(model, jnp.asarray(images)))
    assert got.shape == expected.shape == (2, 64)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), np.abs(got - expected).max()


def test_mean_pooling_is_the_mean_of_the_normalised_patch_tokens():
    hf, spec = reference("vit")
    model, _ = ported(dataclasses.replace(spec, pooling="mean"), state(hf))
    images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        tokens = hf(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2))).last_hidden_state.numpy()
    expected = tokens[:, 1:].mean(axis=1)
    got = np.asarray(jit_features(model, jnp.asarray(images)))
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def qkv(t: dict, prefix: str, i: int, kind: str) -> np.ndarray:
    return np.concatenate([t[f"{prefix}{i}.attention.{p}_proj.{kind}"] for p in "qkv"])


def as_timm(t: dict, depth: int, dinov2: bool) -> dict:
    """timm's VisionTransformer state dict (vit_*_patch16_224, vit_*_patch14_dinov2)."""
    prefix = "encoder.layer." if dinov2 else "layers."
    out = {"cls_token": t["embeddings.cls_token"], "pos_embed": t["embeddings.position_embeddings"],
           "patch_embed.proj.weight": t["embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": t["embeddings.patch_embeddings.projection.bias"],
           "norm.weight": t["layernorm.weight"], "norm.bias": t["layernorm.bias"], "head.weight": np.zeros((10, 64))}
    for i in range(depth):
        src = f"{prefix}{i}."
        for kind in ("weight", "bias"):
            out[f"blocks.{i}.norm1.{kind}"] = t[src + ("norm1." if dinov2 else "layernorm_before.") + kind]
            out[f"blocks.{i}.norm2.{kind}"] = t[src + ("norm2." if dinov2 else "layernorm_after.") + kind]
            out[f"blocks.{i}.attn.qkv.{kind}"] = qkv(t, prefix, i, kind)
            out[f"blocks.{i}.attn.proj.{kind}"] = t[f"{src}attention.o_proj.{kind}"]
            out[f"blocks.{i}.mlp.fc1.{kind}"] = t[f"{src}mlp.fc1.{kind}"]
            out[f"blocks.{i}.mlp.fc2.{kind}"] = t[f"{src}mlp.fc2.{kind}"]
        if dinov2:
            out[f"blocks.{i}.ls1.gamma"] = t[f"{src}layer_scale1.lambda1"]
            out[f"blocks.{i}.ls2.gamma"] = t[f"{src}layer_scale2.lambda1"]
    return out


class MHABlock(torch.nn.Module):
    """torchvision's EncoderBlock and OpenAI CLIP's ResidualAttentionBlock: pre-norm, nn.MultiheadAttention
    (fused in_proj), an MLP; their parameter names differ."""

    def __init__(self, d: int, heads: int, mlp: int, eps: float, openai: bool):
        super().__init__()
        nn = torch.nn
        self.ln_1, self.ln_2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        attention = nn.MultiheadAttention(d, heads, batch_first=True)
        if openai:
            from collections import OrderedDict

            self.attn = attention
            self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(d, mlp), gelu=QuickGELU(), c_proj=nn.Linear(mlp, d)))
        else:
            self.self_attention = attention
            self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, d), nn.Dropout(0.0))

    def forward(self, x):
        attention = self.attn if hasattr(self, "attn") else self.self_attention
        y = self.ln_1(x)
        x = x + attention(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class QuickGELU(torch.nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class TorchvisionViT(torch.nn.Module):
    """torchvision's VisionTransformer (vit_b_16's names), class token after the final LayerNorm."""

    def __init__(self, spec: ViTSpec):
        super().__init__()
        nn, d, grid = torch.nn, spec.width, spec.native_size // spec.patch
        self.conv_proj = nn.Conv2d(3, d, spec.patch, spec.patch)
        self.class_token = nn.Parameter(torch.randn(1, 1, d))
        self.encoder = nn.Module()
        self.encoder.pos_embedding = nn.Parameter(torch.randn(1, 1 + grid * grid, d))
        self.encoder.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", MHABlock(d, spec.heads, spec.mlp, 1e-6, openai=False)) for i in range(spec.depth)))
        self.encoder.ln = nn.LayerNorm(d, eps=1e-6)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(d, 10)))

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(len(x), -1, -1), x], 1) + self.encoder.pos_embedding
        return self.encoder.ln(self.encoder.layers(x))[:, 0]


class OpenAIVisual(torch.nn.Module):
    """OpenAI CLIP's VisionTransformer (the `visual.` names of a whole CLIP state dict): no patch bias, ln_pre,
    quick-GELU, ln_post on the class token (before `proj`, which is not part of the feature)."""

    def __init__(self, spec: ViTSpec):
        super().__init__()
        nn, d, grid = torch.nn, spec.width, spec.native_size // spec.patch
        self.conv1 = nn.Conv2d(3, d, spec.patch, spec.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(d))
        self.positional_embedding = nn.Parameter(torch.randn(1 + grid * grid, d))
        self.ln_pre, self.ln_post = nn.LayerNorm(d), nn.LayerNorm(d)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*[MHABlock(d, spec.heads, spec.mlp, 1e-5, openai=True)
                                                     for _ in range(spec.depth)])
        self.proj = nn.Parameter(torch.randn(d, 32))

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(len(x), 1, -1), x], 1) + self.positional_embedding
        return self.ln_post(self.transformer.resblocks(self.ln_pre(x))[:, 0])


@pytest.mark.parametrize("kind", ["torchvision", "openai_clip"])
def test_vit_port_of_the_multihead_attention_layouts_matches_pytorch(kind):
    """torchvision's and OpenAI's ViTs (nn.MultiheadAttention's fused in_proj), in plain PyTorch with their
    parameter names: torchvision does not import beside the CPU torch wheel, and OpenAI's code is not on PyPI."""
    spec = ViTSpec(patch=16, width=64, depth=2, heads=4, mlp=128, native_size=32, eps=1e-6)
    if kind == "openai_clip":
        spec = dataclasses.replace(spec, eps=1e-5, pre_norm=True, activation="quick_gelu")
    torch.manual_seed(0)
    reference = randomise(TorchvisionViT(spec) if kind == "torchvision" else OpenAIVisual(spec))
    tensors = state(reference)
    if kind == "openai_clip":  # a whole CLIP model's state dict: the image tower under visual., a text tower beside
        tensors = {**{f"visual.{k}": v for k, v in tensors.items()}, "token_embedding.weight": np.zeros((10, 8)),
                   "transformer.resblocks.0.ln_1.weight": np.zeros(8)}
    model, layout = ported(spec, tensors)
    assert layout == kind
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(jit_features(model, jnp.asarray(images)))
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), np.abs(got - expected).max()


HUB_NAMES = [(r"^layers\.(\d+)\.", r"encoder.layer.\1."), (r"attention\.q_proj", "attention.attention.query"),
             (r"attention\.k_proj", "attention.attention.key"), (r"attention\.v_proj", "attention.attention.value"),
             (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "intermediate.dense"),
             (r"mlp\.fc2", "output.dense")]


def as_hub(t: dict) -> dict:
    """The files on the Hub keep transformers 4's names (`encoder.layer.N.attention.attention.query`, ...), and a
    ViTForImageClassification's carry `vit.`."""
    import re

    hub = {}
    for name, value in t.items():
        for pattern, replacement in HUB_NAMES:
            name = re.sub(pattern, replacement, name)
        hub["vit." + name] = value
    hub["classifier.weight"] = np.zeros((10, 64))
    return hub


@pytest.mark.parametrize("kind,layout", [("vit", "timm"), ("vit", "hub"), ("dinov2", "timm")])
def test_every_layout_ports_to_the_same_parameters(kind, layout):
    hf, spec = reference(kind)
    tensors = state(hf)
    expected, _ = port_vit(tensors, spec)
    other = as_timm(tensors, spec.depth, kind == "dinov2") if layout == "timm" else as_hub(tensors)
    got, found = port_vit(other, spec)
    assert found == ("hf" if layout == "hub" else layout)
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(a).reshape(np.shape(b)), b)
