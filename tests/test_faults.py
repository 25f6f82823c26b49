"""The faults relrank survives: each test breaks something the way users and machines do, and checks what follows.

Read the test names as the list. Every error must be one line that names the
file, step or flag at fault (no traceback), and nothing may silently give
wrong numbers.
"""

import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from safetensors.numpy import save_file

import relrank
from relrank.cli import evaluate_main, main, train_main
from relrank.configs import make_config
from relrank.data.datasets import load_dataset
from relrank.data.images import decode, to_uint8_rgb
from relrank.errors import Interrupted, UserError
from relrank.model.weights import load_pretrained, read_pickle
from relrank.run.checkpoints import Checkpoints
from relrank.run.workdir import exclusive
from relrank.train.loop import train

from conftest import REPO

DUMMY = os.path.join(REPO, "datasets")


def last_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def largest_file(folder: str) -> str:
    files = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs]
    return max(files, key=os.path.getsize)


def trained_config(data_dir, **overrides):
    """The Config of the session's `trained_run` (so a copy of it resumes)."""
    fields = dict(attr="brightness", data_dir=data_dir, epochs=2, checkpoint_every_steps=100, keep_checkpoints=2,
                  log_every_steps=25)
    return make_config(**{**fields, **overrides})


def copy_run(trained_run, tmp_path, name="run") -> str:
    workdir = str(tmp_path / name)
    shutil.copytree(trained_run[0], workdir)
    return workdir


def decompression_bomb_png(path, width=20000, height=10000):
    """A tiny PNG whose header claims 200 million pixels (over PIL's bomb limit)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 2501))
                + chunk(b"IEND", b""))


def write_pairs_csv(root, lines, n_images=4, header="image_a,image_b,attribute,label", encoding="utf-8"):
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    for i in range(n_images):
        Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(os.path.join(root, "images", f"{i}.png"))
    with open(os.path.join(root, "pairs.csv"), "w", encoding=encoding) as f:
        f.write("\n".join([header, *lines]) + "\n")


# 1. Pixels ------------------------------------------------------------------------------------------------

def image_modes(folder):
    """{file name: expected uint8 RGB}, one file per PIL mode, expectations computed with numpy alone."""
    h, w = 20, 28
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 9, y * 12, (x + y) * 5], -1).astype(np.uint8)
    alpha = (x * 9).astype(np.uint8)
    expected = {}

    def save(name, image, pixels, **kwargs):
        image.save(os.path.join(folder, name), **kwargs)
        expected[name] = np.asarray(pixels, np.uint8)

    def over_white(colour, a):
        a = a[..., None].astype(np.float64) / 255
        return np.rint(colour * a + 255 * (1 - a))

    palette_image = Image.fromarray(rgb).quantize(16)
    palette = np.asarray(palette_image.getpalette(), np.float64).reshape(-1, 3)
    index = np.asarray(palette_image)
    save("palette.png", palette_image, palette[index])
    index_alpha = np.arange(256, dtype=np.uint8)[::-1].copy()  # per-index alpha (a tRNS table)
    save("palette_alpha.png", palette_image, over_white(palette[index], index_alpha[index]),
         transparency=index_alpha.tobytes())
    gray = rgb[..., 0]
    save("gray.png", Image.fromarray(gray, "L"), np.repeat(gray[..., None], 3, -1))
    save("gray_alpha.png", Image.fromarray(np.stack([gray, alpha], -1), "LA"),
         np.repeat(over_white(gray[..., None].astype(np.float64), alpha), 3, -1))
    save("rgba.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), over_white(rgb.astype(np.float64), alpha))
    cmyk = np.stack([x * 9, y * 3, 255 - x * 9, y * 6], -1).astype(np.uint8)
    c, m, yellow, k = (cmyk[..., i].astype(np.float64) for i in range(4))
    save("cmyk.tiff", Image.fromarray(cmyk, "CMYK"),
         np.rint(np.stack([(255 - c), (255 - m), (255 - yellow)], -1) * (255 - k)[..., None] / 255))
    sixteen = (x * 2340 + y * 40).astype(np.uint16)
    save("sixteen_bit.png", Image.fromarray(sixteen), np.repeat(np.rint(sixteen / 257)[..., None], 3, -1))
    save("int32.tiff", Image.fromarray(sixteen.astype(np.int32), "I"), np.repeat(np.rint(sixteen / 257)[..., None], 3, -1))
    unit = (x / (w - 1)).astype(np.float32)
    save("float.tiff", Image.fromarray(unit, "F"), np.repeat(np.rint(unit * 255)[..., None], 3, -1))
    return rgb, expected


def test_1_every_image_mode_gives_the_same_rgb_pixels_in_training_and_in_use(tmp_path, trained_run):
    folder = tmp_path / "mine" / "images"
    os.makedirs(folder)
    rgb, expected = image_modes(str(folder))
    for name, pixels in expected.items():
        decoded = np.asarray(decode(str(folder / name)))
        assert decoded.shape == pixels.shape and np.abs(decoded.astype(int) - pixels).max() <= 1, name

    # A JPEG whose EXIF says "rotate 90 degrees clockwise to display" is used as displayed.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(folder / "rotated.jpg", quality=95, exif=exif.tobytes())
    shown = np.rot90(rgb, k=-1)
    decoded = np.asarray(decode(str(folder / "rotated.jpg")))
    assert decoded.shape == shown.shape and np.abs(decoded.astype(int) - shown).mean() < 4

    # Training and evaluation read the prepared dataset; scoring reads the file: same pixels.
    names = sorted(os.listdir(folder))
    lines = [f"{a},{b},look,more" for a, b in zip(names, names[1:] + names[:1])]
    with open(tmp_path / "mine" / "pairs.csv", "w") as f:
        f.write("image_a,image_b,attribute,label,split\n" + "\n".join(f"{line},train" for line in lines) + "\n")
    data = load_dataset("pairs_csv", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "mine"))
    stored = [data.source[i]["name"] for i in range(len(data.source))]
    stored = [n.decode() if isinstance(n, bytes) else n for n in stored]
    prepared = data.load_images(np.arange(len(stored)), 32)
    for name, pixels in zip(stored, prepared):
        np.testing.assert_array_equal(pixels, to_uint8_rgb(str(folder / name), 32), err_msg=name)
    ranker = relrank.load(trained_run[0])
    palette = str(folder / "palette.png")
    np.testing.assert_allclose(ranker.score([palette]), ranker.score(expected["palette.png"][None]), rtol=1e-6)


# 2. Stale prepared data ------------------------------------------------------------------------------------

def test_2_pairs_csv_edits_after_the_first_prepare_are_used(tmp_path, capsys):
    root = str(tmp_path / "mine")
    shutil.copytree(os.path.join(DUMMY, "pairs_csv", "dummy_data"), root)
    data_dir = str(tmp_path / "tfds")
    first = load_dataset("pairs_csv", data_dir=data_dir, manual_dir=root)
    assert first.attributes == ["warm", "cluttered"] and first.pairs("train", "warm").target[0] == 0.0

    with open(os.path.join(root, "pairs.csv")) as f:
        lines = f.read().splitlines()
    lines[1] = "photo_0.png,photo_1.png,warm,more,train"  # a changed label
    lines.append("photo_2.png,photo_3.png,sharp,less,train")  # a new attribute
    with open(os.path.join(root, "pairs.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    second = load_dataset("pairs_csv", data_dir=data_dir, manual_dir=root)
    assert "changed since it was prepared; preparing it again" in capsys.readouterr().err
    assert second.attributes == ["warm", "cluttered", "sharp"]
    assert second.pairs("train", "warm").target[0] == 1.0 and len(second.pairs("train", "sharp")) == 1
    assert len(os.listdir(os.path.join(data_dir, "pairs_csv"))) == 1  # the stale copy is gone

    with open(os.path.join(root, "pairs.csv"), "a") as f:
        f.write("photo_4.png,photo_4.png,warm,more,train\n")  # a new bad row is checked
    with pytest.raises(UserError, match="line 22: 'photo_4.png' is compared with itself"):
        load_dataset("pairs_csv", data_dir=data_dir, manual_dir=root)


# 3. One writer per workdir ---------------------------------------------------------------------------------

def test_3_a_second_trainer_on_a_workdir_is_refused_and_a_crashed_one_leaves_no_lock(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom relrank.run.workdir import exclusive\n"
         f"with exclusive({workdir!r}):\n    print('locked', flush=True)\n    time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"workdir {workdir} is in use by process {holder.pid}"):
            train(make_config(attr="size", data_dir=data_dir), workdir)
        assert os.listdir(workdir) == [".lock"]  # nothing written by the refused trainer
    finally:
        holder.kill()  # as a crash would: no clean-up runs
        holder.wait()
    with exclusive(workdir):  # the operating system released the dead process's lock
        pass


# 4. Corrupt checkpoints ------------------------------------------------------------------------------------

def flip_a_byte(path):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[len(data) // 2] ^= 0x10
        f.seek(0)
        f.write(data)


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize("damage,why", [
    # A flipped bit fails the checksum, or the decompression first when it lands in compressed framing.
    (lambda step: flip_a_byte(largest_file(os.path.join(step, "params"))), "do not match the checksums|is damaged"),
    (lambda step: truncate(largest_file(os.path.join(step, "params"))), "is damaged or missing"),
    (lambda step: os.remove(largest_file(os.path.join(step, "params"))), "is damaged or missing"),
    (lambda step: os.remove(os.path.join(step, "config", "metadata")), "its config cannot be read"),
    (lambda step: truncate(os.path.join(step, "params", "manifest.ocdbt")), "the index of its params is damaged"),
], ids=["bit-flip", "truncated-array", "deleted-array", "deleted-config", "truncated-manifest"])
def test_4_a_corrupt_checkpoint_is_named_and_the_readable_steps_offered(trained_run, tmp_path, capsys, damage, why):
    workdir = copy_run(trained_run, tmp_path)
    damage(os.path.join(workdir, "checkpoints", "500"))
    assert evaluate_main([f"--workdir={workdir}"]) == 2
    line = last_error_line(capsys)
    assert "checkpoint step 500" in line and "is unreadable" in line and re.search(why, line), line
    assert "readable steps: " in line and "400" in line and "--checkpoint=STEP" in line, line
    assert relrank.load(workdir, "400").step == 400


def test_4_training_resumes_from_the_newest_readable_checkpoint(trained_run, data_dir, tmp_path, capsys):
    workdir = copy_run(trained_run, tmp_path)
    flip_a_byte(largest_file(os.path.join(workdir, "checkpoints", "500", "train")))
    summary = train(trained_config(data_dir), workdir, stop_after_steps=2)
    err = capsys.readouterr().err
    assert "checkpoint step 500" in err and "unreadable" in err and "resuming from step 400" in err
    assert summary["resumed_from_step"] == 400 and summary["final_step"] == 402
    assert os.path.isdir(os.path.join(workdir, "unreadable_checkpoints", "500"))


def test_4_resuming_with_another_optimizer_is_refused_not_taken_for_corruption(trained_run, data_dir, tmp_path):
    workdir = copy_run(trained_run, tmp_path)
    with pytest.raises(UserError, match="optimizer 'rmsprop' -> 'adamw'.*use another --workdir"):
        train(trained_config(data_dir, optimizer="adamw"), workdir)
    assert not os.path.exists(os.path.join(workdir, "unreadable_checkpoints"))
    assert relrank.load(workdir).step == 500


# 5. A metrics line cut short by a crash --------------------------------------------------------------------

def test_5_a_partial_last_metrics_line_is_dropped_on_resume(trained_run, data_dir, tmp_path):
    workdir = copy_run(trained_run, tmp_path)
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    with open(path, "a") as f:
        f.write('{"step": 501, "epoch": 2.0, "lo')
    summary = train(trained_config(data_dir), workdir)  # resumes at the end: nothing left to train
    assert summary["final_step"] == 500
    with open(path) as f:
        assert [json.loads(line) for line in f] == rows
    assert not [f for f in os.listdir(workdir) if ".tmp" in f]


# 6. Broken dataset source files ----------------------------------------------------------------------------

def assert_first_line_then_even_indent(message, *first_line_has):
    first, *rest = message.splitlines()
    for text in first_line_has:
        assert text in first, first
    rest = [line for line in rest if line.strip()]
    assert all(line.startswith("  ") for line in rest)
    assert min(len(line) - len(line.lstrip()) for line in rest) == 2  # dedented, then indented evenly


@pytest.mark.parametrize("content", [b"", b"this is not a MATLAB file at all" * 10], ids=["empty", "not-matlab"])
def test_6_an_unreadable_mat_file_is_named(tmp_path, content):
    pubfig = str(tmp_path / "pubfig")
    shutil.copytree(os.path.join(DUMMY, "pubfig", "dummy_data"), pubfig)
    with open(os.path.join(pubfig, "data.mat"), "wb") as f:
        f.write(content)
    with pytest.raises(UserError) as error:
        load_dataset("pubfig", data_dir=str(tmp_path / "tfds"), manual_dir=pubfig)
    assert_first_line_then_even_indent(str(error.value), "cannot read MATLAB file", "data.mat")


def test_6_a_mat_file_without_its_variables_names_them(tmp_path):
    pubfig = str(tmp_path / "pubfig")
    shutil.copytree(os.path.join(DUMMY, "pubfig", "dummy_data"), pubfig)
    scipy.io.savemat(os.path.join(pubfig, "data.mat"), {"im_names": np.array(["a.jpg"], dtype=object)})
    with pytest.raises(UserError, match=r"data.mat lacks the variable\(s\) class_labels, used_for_training, "
                                        r"relative_ordering, attribute_names, class_names \(it holds: im_names\)"):
        load_dataset("pubfig", data_dir=str(tmp_path / "tfds"), manual_dir=pubfig)

    lfw = str(tmp_path / "lfw")
    shutil.copytree(os.path.join(DUMMY, "lfw10", "dummy_data"), lfw)
    scipy.io.savemat(os.path.join(lfw, "LFW10", "annotations", "smiletest.mat"), {"votes": np.zeros(3)})
    with pytest.raises(UserError, match="smiletest.mat lacks the variable.s. images_compare, attribute_strengths"):
        load_dataset("lfw10", data_dir=str(tmp_path / "tfds"), manual_dir=lfw)


def test_6_missing_files_and_bad_images_read_cleanly(tmp_path):
    with pytest.raises(UserError) as error:
        load_dataset("lfw10", data_dir=str(tmp_path / "a"), manual_dir=str(tmp_path / "nowhere"))
    assert_first_line_then_even_indent(str(error.value), str(tmp_path / "nowhere"))
    pubfig = str(tmp_path / "pubfig")
    shutil.copytree(os.path.join(DUMMY, "pubfig", "dummy_data"), pubfig)
    os.remove(os.path.join(pubfig, "data.mat"))
    with pytest.raises(UserError) as error:
        load_dataset("pubfig", data_dir=str(tmp_path / "b"), manual_dir=pubfig)
    assert_first_line_then_even_indent(str(error.value), "missing", "data.mat")
    shutil.rmtree(pubfig)
    shutil.copytree(os.path.join(DUMMY, "pubfig", "dummy_data"), pubfig)
    with open(os.path.join(pubfig, "images", "BobB_2.jpg"), "wb") as f:
        f.write(b"not a jpeg at all")
    with pytest.raises(UserError) as error:
        load_dataset("pubfig", data_dir=str(tmp_path / "c"), manual_dir=pubfig)
    assert "BobB_2.jpg: not an image file" in str(error.value) and "BytesIO" not in str(error.value)


# 7. pairs_csv edge cases -----------------------------------------------------------------------------------

def prepare_csv(tmp_path, **kwargs):
    root = str(tmp_path / "mine")
    write_pairs_csv(root, **kwargs)
    return load_dataset("pairs_csv", data_dir=str(tmp_path / "tfds"), manual_dir=root)


def test_7_a_csv_with_a_header_and_no_rows(tmp_path):
    with pytest.raises(UserError, match="pairs.csv has a header but no pairs"):
        prepare_csv(tmp_path, lines=[])


def test_7_a_csv_that_is_not_utf8(tmp_path):
    with pytest.raises(UserError, match=r"pairs.csv is not UTF-8 text \(byte 0xe9 on line 3\); save it as UTF-8"):
        prepare_csv(tmp_path, lines=["0.png,1.png,warm,more", "1.png,2.png,café,more"], encoding="latin-1")


def test_7_a_short_row(tmp_path):
    with pytest.raises(UserError, match=r"line 3: 2 field\(s\), expected 4"):
        prepare_csv(tmp_path, lines=["0.png,1.png,warm,more", "1.png,2.png"])


def test_7_a_csv_saved_by_excel_with_a_byte_order_mark(tmp_path):
    data = prepare_csv(tmp_path, lines=["0.png,1.png,warm,more,train", "2.png,3.png,warm,less,test"],
                       header="image_a,image_b,attribute,label,split", encoding="utf-8-sig")
    assert data.attributes == ["warm"] and len(data.pairs("train", "warm")) == 1


def test_7_an_image_over_the_decompression_bomb_limit(tmp_path):
    root = str(tmp_path / "mine")
    write_pairs_csv(root, lines=["0.png,bomb.png,warm,more"])
    decompression_bomb_png(os.path.join(root, "images", "bomb.png"))
    with pytest.raises(UserError, match="bomb.png: too many pixels to decode safely"):
        load_dataset("pairs_csv", data_dir=str(tmp_path / "tfds"), manual_dir=root)


def test_7_a_symlink_that_leads_outside_images_is_refused(tmp_path):
    root = str(tmp_path / "mine")
    write_pairs_csv(root, lines=["0.png,1.png,warm,more", "0.png,elsewhere.png,warm,less"])
    Image.new("RGB", (8, 8)).save(tmp_path / "private.png")
    os.symlink(tmp_path / "private.png", os.path.join(root, "images", "elsewhere.png"))
    with pytest.raises(UserError, match="line 3: 'elsewhere.png' is a link to .*private.png, outside images/"):
        load_dataset("pairs_csv", data_dir=str(tmp_path / "tfds"), manual_dir=root)


# 8. Weights files ------------------------------------------------------------------------------------------

def test_8_damaged_weight_files_are_named(tmp_path):
    random_bytes = np.random.default_rng(0).bytes(4096)
    for name, content, why in [
        ("random.pth", random_bytes, "cannot read .*random.pth as a PyTorch state dict"),
        ("random.safetensors", random_bytes, "cannot read .*random.safetensors as safetensors"),
        ("empty.pkl", b"", "cannot read .*empty.pkl as a pickle: the file is empty or truncated"),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError, match=why):
            load_pretrained(str(tmp_path / name))
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "whole.pth")
    save_file({"features.0.weight": np.zeros((64, 3, 3, 3), np.float32)}, tmp_path / "whole.safetensors")
    for name in ("whole.pth", "whole.safetensors"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(UserError, match=f"cannot read .*cut_{name}"):
            load_pretrained(str(tmp_path / f"cut_{name}"))


def vgg16_conv_tensors():
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    tensors = {}
    for index, cin, cout in zip(indices, [3] + widths[:-1], widths):
        tensors[f"features.{index}.weight"] = np.zeros((cout, cin, 3, 3), np.float32)
        tensors[f"features.{index}.bias"] = np.zeros(cout, np.float32)
    return tensors


def test_8_wrong_shapes_and_missing_keys_name_the_layer(tmp_path):
    tensors = vgg16_conv_tensors()
    tensors["features.0.weight"] = np.zeros((32, 3, 3, 3), np.float32)
    torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, tmp_path / "conv.pth")
    with pytest.raises(UserError, match=r"conv.pth: 'features.0.weight' \(layer conv1_1\) has shape \(32, 3, 3, 3\), "
                                        r"expected \(64, 3, 3, 3\) for ImageNet VGG-16"):
        load_pretrained(str(tmp_path / "conv.pth"))
    tensors = vgg16_conv_tensors()
    tensors.update({"classifier.0.weight": np.zeros((4096, 100), np.float32), "classifier.0.bias": np.zeros(4096, np.float32)})
    save_file(tensors, tmp_path / "fc6.safetensors")
    with pytest.raises(UserError, match=r"'classifier.0.weight' \(layer fc6\) has shape \(4096, 100\), expected \(4096, 25088\)"):
        load_pretrained(str(tmp_path / "fc6.safetensors"))
    save_file({"conv1_1.kernel": np.zeros((3, 3, 3, 64), np.float32)}, tmp_path / "relrank.safetensors")
    with pytest.raises(UserError, match=r"relrank.safetensors: no tensor 'conv1_1.bias' \(layer conv1_1\)"):
        load_pretrained(str(tmp_path / "relrank.safetensors"))


@pytest.mark.parametrize("protocol", [0, 1, 2, 5])
def test_8_numpy_pickles_of_every_protocol_load_and_code_still_does_not(tmp_path, protocol):
    lasagne = {"param values": [np.arange(12, dtype=np.float32).reshape(3, 4), np.ones(3, np.float32)],
               "mean value": np.array([103.939, 116.779, 123.68])}
    (tmp_path / "w.pkl").write_bytes(pickle.dumps(lasagne, protocol=protocol))
    loaded = read_pickle(str(tmp_path / "w.pkl"))
    for got, want in zip(loaded["param values"], lasagne["param values"]):
        np.testing.assert_array_equal(got, want)

    class Codec:  # asks _codecs.encode for something other than latin-1 bytes
        def __reduce__(self):
            return (__import__("_codecs").encode, ("ls", "rot13"))
    (tmp_path / "codec.pkl").write_bytes(pickle.dumps(Codec(), protocol=protocol))
    with pytest.raises(UserError, match="refusing to load .*codec.pkl"):
        read_pickle(str(tmp_path / "codec.pkl"))


# 9. Flags --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag,message", [
    ("--seed=-1", "--seed must be >= 0, got -1"),
    ("--log_every_steps=0", "--log_every_steps must be at least 1, got 0"),
    ("--backbone_lr=nan", "--backbone_lr must be a finite number >= 0, got nan"),
    ("--head_lr=inf", "--head_lr must be a finite number >= 0, got inf"),
    ("--weight_decay=nan", "--weight_decay must be a finite number >= 0, got nan"),
    ("--momentum=1.5", "--momentum must be in [0, 1), got 1.5"),
    ("--warmup_fraction=1", "--warmup_fraction must be in [0, 1), got 1.0"),
])
def test_9_bad_flag_values_are_one_line_errors(capsys, flag, message):
    assert train_main([flag]) == 2
    assert last_error_line(capsys) == f"error: {message}"


def test_9_a_workdir_that_cannot_be_one(data_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert train_main([f"--data_dir={data_dir}", f"--workdir={tmp_path / 'file'}"]) == 2
    assert "is a file, not a folder" in last_error_line(capsys)
    assert train_main([f"--data_dir={data_dir}", f"--workdir={tmp_path / 'file' / 'run'}"]) == 2
    assert "cannot be created" in last_error_line(capsys)
    assert train_main([f"--data_dir={data_dir}", "--workdir=/proc/relrank-run"]) == 2
    assert "/proc/relrank-run" in last_error_line(capsys)


def test_9_an_unknown_attribute_leaves_no_workdir(data_dir, tmp_path, capsys):
    workdir = tmp_path / "never"
    assert train_main([f"--data_dir={data_dir}", f"--workdir={workdir}", "--attr=colour"]) == 2
    assert "no attribute 'colour'" in last_error_line(capsys)
    assert not workdir.exists()


def test_9_score_refuses_a_folder_as_out_and_skips_a_decompression_bomb(trained_run, tmp_path, capsys):
    workdir = trained_run[0]
    folder = tmp_path / "images"
    os.makedirs(folder)
    Image.new("RGB", (40, 40), (200, 10, 10)).save(folder / "red.png")
    decompression_bomb_png(folder / "bomb.png")
    assert main(["score", f"--workdir={workdir}", str(folder), f"--out={tmp_path}"]) == 2
    assert f"--out {tmp_path} is a folder" in last_error_line(capsys)
    out = tmp_path / "ranking.csv"
    assert main(["score", f"--workdir={workdir}", str(folder), f"--out={out}"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unreadable file(s)" in err and "bomb.png: too many pixels" in err
    assert out.read_text().count("red.png") == 1


# 10. Interrupts --------------------------------------------------------------------------------------------

def test_10_sigterm_saves_a_checkpoint_and_says_how_to_resume(data_dir, tmp_path):
    workdir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "train.py"), f"--data_dir={data_dir}", f"--workdir={workdir}",
         "--epochs=1", "--log_every_steps=5", "--checkpoint_every_steps=1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (workdir / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted; last checkpoint: step ") and last.endswith("rerun the same command to resume")
    step = int(last.split("step ")[1].split(";")[0])
    assert step >= 5 and relrank.load(str(workdir)).step == step


def test_10_ctrl_c_while_the_final_checkpoint_is_written_finishes_it(data_dir, tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    real_wait = Checkpoints.wait

    def wait_after_ctrl_c(self):
        os.kill(os.getpid(), signal.SIGINT)
        real_wait(self)

    monkeypatch.setattr(Checkpoints, "wait", wait_after_ctrl_c)
    with pytest.raises(Interrupted, match="interrupted; last checkpoint: step 3; rerun the same command to resume"):
        train(make_config(attr="size", data_dir=data_dir), workdir, stop_after_steps=3)
    monkeypatch.undo()
    assert os.path.exists(os.path.join(workdir, "summary.json"))
    assert relrank.load(workdir).step == 3
