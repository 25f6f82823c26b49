"""Backbones chosen with --model and the files users have (issue 19): a ViT-S/16 given as an HF model folder
trains on cached features, resumes from the cache, and its workdir evaluates as the run did and scores exactly
as the HF reference network + the saved ranking layer do; a stale cache is refused; files of another model and
input sizes a backbone cannot take are one line."""

import json
import os
import shutil

import numpy as np
import pytest

import relrank
from relrank.cli import train_main
from relrank.configs import make_config
from relrank.errors import UserError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers", reason="the HF reference models: pip install transformers")

MEAN, STD = [0.4, 0.45, 0.5], [0.3, 0.25, 0.2]


def vit_s16():
    """ViT-S/16 (timm's vit_small_patch16_224 sizes) as HF's ViTModel, random weights away from their init."""
    config = transformers.ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                    intermediate_size=1536, image_size=224, patch_size=16, layer_norm_eps=1e-6)
    torch.manual_seed(0)  # the initialisation's draws
    model = transformers.ViTModel(config, add_pooling_layer=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def vit_reference(tmp_path_factory):
    """(an HF folder of a random ViT-S/16 with a preprocessor_config.json, that network in PyTorch)."""
    folder = tmp_path_factory.mktemp("weights") / "vit-small-patch16-224"
    model = vit_s16()
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(dict(image_mean=MEAN, image_std=STD,
                                                                     rescale_factor=1 / 255)))
    return folder, model


@pytest.fixture(scope="module")
def vit_folder(vit_reference):
    return vit_reference[0]


def train(capsys, *flags) -> tuple[int, str]:
    code = train_main(["--dataset=synthetic", "--recipe=linear", "--image_size=32", "--epochs=1", *flags])
    return code, capsys.readouterr().err


def test_a_vit_from_an_hf_folder_trains_on_cached_features_resumes_and_scores_as_the_reference(
        vit_reference, data_dir, tmp_path, capsys):
    """The run scores cached features with its ranking layer; `relrank evaluate` and `relrank.load` score the
    images with the whole network restored from the workdir (head checkpoint + backbone.safetensors)."""
    from relrank.use.results import evaluate_run

    vit_folder, reference = vit_reference
    cache, workdir = tmp_path / "cache", tmp_path / "run"
    common = [f"--data_dir={data_dir}", "--model=vit_s16", f"--weights={vit_folder}", f"--feature_cache={cache}",
              "--attr=brightness,size", f"--workdir={workdir}"]
    code, err = train(capsys, *common, "--stop_after_steps=5")
    assert code == 0, err[-2000:]
    first = json.loads((workdir / "summary.json").read_text())
    assert first["features_computed"] > 0 and first["features_cached"] == 0
    assert os.path.isfile(first["feature_cache"]) and str(cache) in first["feature_cache"]
    assert (workdir / "backbone.safetensors").is_file()
    code, err = train(capsys, *common)  # resumes the ranking layer; the features come from the cache
    assert code == 0, err[-2000:]
    assert "resuming at step 5" in err and "ranking layer trains on cached features" in err
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["resumed_from_step"] == 5
    assert summary["features_computed"] == 0 and summary["features_cached"] == first["features_computed"]
    config = json.loads((workdir / "config.json").read_text())
    assert config["preprocessing"]["mean"] == MEAN and config["preprocessing"]["std"] == STD
    assert config["spec"]["architecture"] == "vit_s16" and config["backbone_lr"] == 0

    rows = {row["attr"]: row["accuracy"] for row in evaluate_run(str(workdir), data_dir=data_dir)}
    assert rows == pytest.approx(summary["test_accuracy_per_attr"], abs=0.04)  # 1 pair in 3,000: float rounding
    ranker = relrank.load(str(workdir), progress=False)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    x = (images / 255.0 - np.asarray(MEAN)) / np.asarray(STD)
    with torch.no_grad():
        output = reference(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2)).float(), interpolate_pos_encoding=True)
    head = ranker.params["head"]
    expected = output.last_hidden_state[:, 0].numpy() @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
    got = ranker.score_all(images)
    assert np.abs(got - expected).max() <= 1e-4 * max(np.abs(expected).max(), 1e-3), (got, expected)

    changed = vit_folder.parent / "changed" / vit_folder.name  # same name, other weights: the cache is stale
    shutil.copytree(vit_folder, changed)
    with open(changed / "model.safetensors", "r+b") as f:  # the last tensor's last byte, still a valid file
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    code, err = train(capsys, f"--data_dir={data_dir}", "--model=vit_s16", f"--weights={changed}",
                      f"--feature_cache={cache}", "--attr=brightness,size", f"--workdir={tmp_path / 'stale'}")
    assert code == 2
    assert "is stale: its weights was sha256" in err and "delete it to compute the features again" in err
    assert not (tmp_path / "stale").exists()


def test_a_file_of_another_model_or_size_is_one_line_naming_the_tensor(vit_folder, tmp_path, capsys):
    code, err = train(capsys, "--model=vit_b16", f"--weights={vit_folder}", f"--workdir={tmp_path / 'b'}")
    assert code == 2
    assert "layer blocks.0.fc1 bias has shape (1536,) in the file but (3072,) in the model (--model=vit_b16" in err
    code, err = train(capsys, "--model=resnet50", f"--weights={vit_folder}", f"--workdir={tmp_path / 'r'}")
    assert code == 2 and "no tensor 'conv1.weight', which a resnet50 file has" in err
    resnet = tmp_path / "resnet50.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, resnet)
    code, err = train(capsys, "--model=dinov2_s14", f"--weights={resnet}", "--image_size=28", f"--workdir={tmp_path / 'd'}")
    assert code == 2 and "not a ViT state dict in a known layout" in err and "'conv1.weight'" in err
    assert len(err.strip().splitlines()) == 1


def test_an_input_size_a_backbone_cannot_take_is_one_line():
    with pytest.raises(UserError, match=r"--image_size must be a multiple of 14 and at least 32 for "
                                        r"--model=dinov2_s14 \(its patches are 14 px\), got 64"):
        make_config(model="dinov2_s14", image_size=64)
    assert make_config(model="dinov2_s14", image_size=56).spec.architecture == "dinov2_s14"
    with pytest.raises(UserError, match=r"multiple of 32 and at least 32 for --model=vgg16 \(VGG's fc6"):
        make_config(model="vgg16", image_size=112)
    assert make_config(model="resnet50", image_size=112).image_size == 112  # it pools globally
    with pytest.raises(UserError, match="--image_size must be at least 32 for --model=googlenet, got 16"):
        make_config(model="googlenet", image_size=16)


def test_the_full_size_backbones_want_weights(capsys, tmp_path):
    code, err = train(capsys, "--model=clip_b16", f"--workdir={tmp_path / 'c'}")
    assert code == 2 and "trains clip_b16 at 32 px, which is meant to start from pretrained weights" in err



def test_a_frozen_run_checkpointed_before_the_fast_path_resumes_as_it_was_trained(data_dir, tmp_path, monkeypatch):
    """A --backbone_lr=0 run saved whole-network checkpoints before cached features existed: resuming it must not
    read them as ranking-layer checkpoints (which would find them unreadable and set them aside)."""
    from relrank.train import loop

    workdir = tmp_path / "run"
    flags = [f"--data_dir={data_dir}", f"--workdir={workdir}", "--backbone_lr=0", "--epochs=1"]
    with monkeypatch.context() as patched:
        patched.setattr(loop, "uses_cached_features", lambda config: False)  # as relrank trained it then
        assert train_main([*flags, "--stop_after_steps=20"]) == 0
    assert not (workdir / "backbone.safetensors").exists()
    assert train_main(flags) in (0, 3)  # 3: the monitor's verdict on one epoch of random features; not the point
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["resumed_from_step"] == 20 and "features_computed" not in summary
    assert not (workdir / "unreadable_checkpoints").exists() and not (workdir / "backbone.safetensors").exists()
    assert relrank.load(str(workdir), progress=False).step == summary["final_step"]
