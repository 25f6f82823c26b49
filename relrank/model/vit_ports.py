"""ViT, DINOv2 and CLIP weights in the layouts users have, ported to `relrank.model.vit.ViT`.

Every layout is first renamed to timm's (`blocks.N.attn.qkv`, `blocks.N.ls1.gamma`, ...), which then
maps onto the module. Layouts, told apart by their tensor names:
  timm          ViT (augreg), DINOv2 (`vit_*_patch14_dinov2`) and the DINOv2 release's own .pth
  torchvision   vit_b_16 (`encoder.layers.encoder_layer_N.*`)
  hf            transformers' ViTModel / Dinov2Model (the Hub's v4 names and v5's), with or without the
                `vit.` / `dinov2.` prefix of a *ForImageClassification
  hf_clip       CLIPVisionModel, or a whole CLIPModel's `vision_model.`
  openai_clip   OpenAI's and open_clip's state dicts (`visual.transformer.resblocks.N.*`)
"""

from __future__ import annotations

import re

import numpy as np

from relrank.errors import UserError
from relrank.model.vit import ViTSpec

LAYOUTS = {  # a tensor that only that layout has -> the layout
    "blocks.0.attn.qkv.weight": "timm",
    "encoder.layers.encoder_layer_0.ln_1.weight": "torchvision",
    "embeddings.patch_embeddings.projection.weight": "hf",
    "embeddings.patch_embedding.weight": "hf_clip",
    "visual.conv1.weight": "openai_clip",
}


def layout_of(tensors: dict) -> str | None:
    """The layout of a state dict (prefixes of HF's task models and of whole CLIP models removed), or None."""
    for key, layout in LAYOUTS.items():
        if key in tensors:
            return layout
    return None


def strip_prefix(tensors: dict) -> dict:
    """A state dict without the prefix of HF's *ForImageClassification (`vit.`, `dinov2.`) or CLIPModel
    (`vision_model.`; the text tower dropped)."""
    for prefix in ("vit.", "dinov2.", "vision_model."):
        if any(k.startswith(prefix + "embeddings.") for k in tensors):
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return tensors


def _rename(tensors: dict, rules: list[tuple[str, str]]) -> dict:
    renamed = {}
    for name, value in tensors.items():
        for pattern, replacement in rules:
            name = re.sub(pattern, replacement, name)
        renamed[name] = value
    return renamed


def _fuse_qkv(tensors: dict, parts: tuple[str, str, str], fused: str) -> dict:
    """Separate query/key/value projections (`parts`, with {i} for the block) fused into timm's qkv."""
    out = dict(tensors)
    i = 0
    while parts[0].format(i=i) + ".weight" in out:
        for kind in ("weight", "bias"):
            out[fused.format(i=i) + f".{kind}"] = np.concatenate([out.pop(p.format(i=i) + f".{kind}") for p in parts])
        i += 1
    return out


HF_RULES = [  # transformers 4 (the Hub's files) and 5 names -> timm's, after q/k/v are fused
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."), (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"), (r"^embeddings\.mask_token$", "mask_token"),
    (r"^(?:encoder\.layer|layers)\.(\d+)\.", r"blocks.\1."), (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."), (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.attention\.o_proj\.", ".attn.proj."), (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."), (r"\.layer_scale(\d)\.lambda1$", r".ls\1.gamma"), (r"^layernorm\.", "norm."),
]
HF_QKV = [(("encoder.layer.{i}.attention.attention.query", "encoder.layer.{i}.attention.attention.key",
            "encoder.layer.{i}.attention.attention.value"), "blocks.{i}.attn.qkv"),
          (("layers.{i}.attention.q_proj", "layers.{i}.attention.k_proj", "layers.{i}.attention.v_proj"),
           "blocks.{i}.attn.qkv"),
          (("encoder.layer.{i}.attention.q_proj", "encoder.layer.{i}.attention.k_proj",
            "encoder.layer.{i}.attention.v_proj"), "blocks.{i}.attn.qkv")]
HF_CLIP_RULES = [
    (r"^embeddings\.patch_embedding\.", "patch_embed.proj."), (r"^embeddings\.class_embedding$", "cls_token"),
    (r"^embeddings\.position_embedding\.weight$", "pos_embed"), (r"^pre_layrnorm\.", "norm_pre."),
    (r"^post_layernorm\.", "norm."), (r"^encoder\.layers\.(\d+)\.", r"blocks.\1."), (r"\.layer_norm(\d)\.", r".norm\1."),
    (r"\.self_attn\.out_proj\.", ".attn.proj."),
]
TORCHVISION_RULES = [
    (r"^conv_proj\.", "patch_embed.proj."), (r"^class_token$", "cls_token"), (r"^encoder\.pos_embedding$", "pos_embed"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.", r"blocks.\1."), (r"\.ln_(\d)\.", r".norm\1."),
    (r"\.self_attention\.in_proj_(weight|bias)$", r".attn.qkv.\1"), (r"\.self_attention\.out_proj\.", ".attn.proj."),
    (r"\.mlp\.(?:0|linear_1)\.", ".mlp.fc1."), (r"\.mlp\.(?:3|linear_2)\.", ".mlp.fc2."), (r"^encoder\.ln\.", "norm."),
]
OPENAI_RULES = [
    (r"^visual\.", ""), (r"^conv1\.", "patch_embed.proj."), (r"^class_embedding$", "cls_token"),
    (r"^positional_embedding$", "pos_embed"), (r"^ln_pre\.", "norm_pre."), (r"^ln_post\.", "norm."),
    (r"^transformer\.resblocks\.(\d+)\.", r"blocks.\1."), (r"\.ln_(\d)\.", r".norm\1."),
    (r"\.attn\.in_proj_(weight|bias)$", r".attn.qkv.\1"), (r"\.attn\.out_proj\.", ".attn.proj."),
    (r"\.mlp\.c_fc\.", ".mlp.fc1."), (r"\.mlp\.c_proj\.", ".mlp.fc2."),
]


def to_timm(tensors: dict, layout: str) -> dict:
    """The state dict renamed to timm's layout."""
    if layout == "hf":
        for parts, fused in HF_QKV:
            tensors = _fuse_qkv(tensors, parts, fused)
        return _rename(tensors, HF_RULES)
    if layout == "hf_clip":
        parts = tuple(f"encoder.layers.{{i}}.self_attn.{p}_proj" for p in "qkv")
        return _rename(_fuse_qkv(tensors, parts, "encoder.layers.{i}.attn.qkv"), HF_CLIP_RULES)
    if layout == "torchvision":
        return _rename(tensors, TORCHVISION_RULES)
    if layout == "openai_clip":
        return _rename({k: v for k, v in tensors.items() if k.startswith("visual.") or "visual.conv1.weight" not in tensors},
                       OPENAI_RULES)
    return tensors


class _Tensors(dict):
    def __init__(self, tensors: dict, source: str, layout: str):
        super().__init__(tensors)
        self.source, self.layout = source, layout

    def __missing__(self, key):
        raise UserError(f"{self.source}: no tensor for {key} (in timm's names) in this {self.layout}-layout file; "
                        f"is it a ViT of another depth, or another model?")


def from_timm(tensors: dict, spec: ViTSpec, source: str = "weights file", layout: str = "timm") -> dict:
    """A state dict in timm's names -> the ViT's backbone params (no head)."""
    t = _Tensors(tensors, source, layout)
    if "fc_norm.weight" in t:
        raise UserError(f"{source}: a ViT pooled by timm's fc_norm (global average) is not supported; use a "
                        f"class-token ViT (--pooling=mean averages its tokens)")
    if "reg_token" in t:
        raise UserError(f"{source}: a ViT with register tokens is not supported; use the variant without registers")

    def linear(name):
        return {"kernel": np.ascontiguousarray(t[f"{name}.weight"].T), "bias": t[f"{name}.bias"]}

    def norm(name):
        return {"scale": t[f"{name}.weight"], "bias": t[f"{name}.bias"]}

    projection = t["patch_embed.proj.weight"]
    params = {
        "patch_embed": {"kernel": np.ascontiguousarray(np.transpose(projection, (2, 3, 1, 0))),
                        "bias": tensors.get("patch_embed.proj.bias", np.zeros(projection.shape[0], projection.dtype))},
        "cls_token": t["cls_token"].reshape(1, 1, -1),
        "pos_embed": t["pos_embed"].reshape(1, *t["pos_embed"].shape[-2:]),
        "norm": norm("norm"), "blocks": {},
    }
    if spec.pre_norm:
        params["norm_pre"] = norm("norm_pre")
    for i in range(spec.depth):
        p = f"blocks.{i}"
        block = {"norm1": norm(f"{p}.norm1"), "norm2": norm(f"{p}.norm2"), "qkv": linear(f"{p}.attn.qkv"),
                 "proj": linear(f"{p}.attn.proj"), "fc1": linear(f"{p}.mlp.fc1"), "fc2": linear(f"{p}.mlp.fc2")}
        if spec.layer_scale:
            block["ls1"], block["ls2"] = t[f"{p}.ls1.gamma"], t[f"{p}.ls2.gamma"]
        params["blocks"][i] = block
    if f"blocks.{spec.depth}.norm1.weight" in t:
        raise UserError(f"{source}: the file's ViT has more than the model's {spec.depth} blocks")
    return params


def port_vit(tensors: dict, spec: ViTSpec, source: str = "weights file") -> tuple[dict, str]:
    """(the ViT's backbone params, the file's layout) from a state dict in any layout above."""
    tensors = strip_prefix(tensors)
    layout = layout_of(tensors)
    if layout is None:
        raise UserError(f"{source}: not a ViT state dict in a known layout (timm, torchvision, HF transformers, "
                        f"OpenAI/open_clip CLIP); its first tensor is {next(iter(tensors), 'none')!r}")
    return from_timm(to_timm(tensors, layout), spec, source, layout), layout
