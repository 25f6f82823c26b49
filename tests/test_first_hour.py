"""What a new user met in the first hour (issue 17), numbered as the issue's items: each test failed before.

Read the test names as the list; tests/test_faults.py holds the faults found before.
"""

import errno
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io
from PIL import Image
from safetensors.numpy import save_file

import relrank
from relrank.cli import evaluate_main, main, train_main
from relrank.configs import make_config
from relrank.data import batches
from relrank.data.datasets import load_dataset
from relrank.errors import UserError
from relrank.model.network import padded_size, scores
from relrank.parallel import distributed
from relrank.train.loop import train
from relrank.use.figures import distinct_digits
from relrank.use.results import dataset_means, pool_seeds

from conftest import REPO, run_cli
from test_faults import DUMMY, copy_run, last_error_line, trained_config


def rewrite_saved_config(workdir: str, **changes) -> None:
    """Change fields of the Config a run saved (in config.json and in every checkpoint), as another run's would be."""
    paths = [os.path.join(workdir, "config.json")]
    paths += [os.path.join(root, f) for root, _, files in os.walk(os.path.join(workdir, "checkpoints"))
              for f in files if f == "metadata" and os.path.basename(root) == "config"]
    for path in paths:
        with open(path) as f:
            saved = json.load(f)
        saved.update(changes)
        with open(path, "w") as f:
            json.dump(saved, f)


def image_name(data, row) -> str:
    name = data.source[int(row)]["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def pubfig_source(tmp_path) -> str:
    folder = str(tmp_path / "pubfig_source")
    shutil.copytree(os.path.join(DUMMY, "pubfig", "dummy_data"), folder)
    return folder


def crowd_folder(root, lines: list[str], n_images: int = 6, fmt: str = "bmp") -> str:
    """A pairs_csv folder: `n_images` distinct small images (uncompressed: same size whatever the pixels)."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    for i in range(n_images):
        Image.new("RGB", (16, 16), (i * 40, 255 - i * 40, 80)).save(os.path.join(root, "images", f"{i}.{fmt}"))
    with open(os.path.join(root, "pairs.csv"), "w") as f:
        f.write("\n".join(["image_a,image_b,attribute,label,split", *lines]) + "\n")
    return str(root)


# 1. Evaluation pools only seeds of one experiment ------------------------------------------------------------

def test_1_evaluate_pools_only_runs_that_differ_in_the_seed_alone(trained_run, tmp_path, capsys):
    root = tmp_path / "runs"
    copy_run(trained_run, root, "a")
    other = copy_run(trained_run, root, "b")
    rewrite_saved_config(other, seed=1, epochs=3)
    assert evaluate_main([f"--workdir={root}", "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["attributes"]
    assert sorted((g["seeds"], g["label"]) for g in groups) == [([0], "epochs=2"), ([1], "epochs=3")]
    assert evaluate_main([f"--workdir={root}"]) == 0
    table = capsys.readouterr().out
    assert "settings" in table and "epochs=2" in table and "epochs=3" in table and "mean" not in table

    rewrite_saved_config(other, epochs=2)  # now a second seed of the same experiment
    assert evaluate_main([f"--workdir={root}", "--json"]) == 0
    (group,) = json.loads(capsys.readouterr().out)["attributes"]
    assert group["seeds"] == [0, 1] and group["label"] == ""

    rewrite_saved_config(other, seed=0)  # the same run twice is not two seeds
    assert evaluate_main([f"--workdir={root}"]) == 2
    assert "same settings with the same seed 0" in last_error_line(capsys)


def test_1_means_are_never_taken_across_datasets_or_experiments():
    def row(dataset, attr, seed, accuracy, model="vgg16_small"):
        return dict(workdir=f"{dataset}/{attr}/{model}/{seed}", dataset=dataset, attr=attr, seed=seed, step=1,
                    accuracy=accuracy, num_pairs=10, did_not_learn="",
                    experiment=dict(model=model, dataset=dataset, attributes="one"))

    rows = [row("pubfig", "Male", 0, 80), row("pubfig", "Male", 1, 90), row("pubfig", "Young", 0, 70),
            row("synthetic", "size", 0, 99), row("synthetic", "brightness", 0, 97), row("pubfig", "Male", 0, 60, "vgg16")]
    groups = pool_seeds(rows)
    assert len(groups) == 5
    male = next(g for g in groups if g["attr"] == "Male" and g["experiment"]["model"] == "vgg16_small")
    assert male["mean"] == 85 and male["std"] == 5 and male["label"] == "model=vgg16_small"
    means = {(m["dataset"], m["label"]): (m["attributes"], m["mean"]) for m in dataset_means(groups)}
    assert means == {("pubfig", "model=vgg16_small"): (2, 77.5), ("synthetic", ""): (2, 98.0)}
    # A joint run's Male is not a seed of the single-attribute runs' Male.
    joint = dict(row("pubfig", "Male", 0, 50), experiment=dict(model="vgg16_small", dataset="pubfig", attributes="Male,Young"))
    assert len(pool_seeds(rows[:3] + [joint])) == 3


# 2. A resume that would change the run's meaning is refused ---------------------------------------------------

def test_2_resuming_with_changed_settings_names_them_and_extend_is_explicit(trained_run, data_dir, tmp_path):
    workdir = copy_run(trained_run, tmp_path)
    with pytest.raises(UserError, match=r"epochs 2 -> 3, head_lr 0\.001 -> 0\.5; .*another --workdir.*--extend"):
        train(trained_config(data_dir, epochs=3, head_lr=0.5), workdir)
    with pytest.raises(UserError, match=r"crop_min_scale 1\.0 -> 0\.5, flip False -> True"):
        train(trained_config(data_dir, crop_min_scale=0.5, flip=True), workdir)
    with pytest.raises(UserError, match=r"epochs 2 -> 3, color_jitter 0\.0 -> 0\.1"):
        train(trained_config(data_dir, epochs=3, color_jitter=0.1), workdir, extend=True)  # only epochs may grow
    summary = train(trained_config(data_dir, epochs=3, log_every_steps=1), workdir, stop_after_steps=1, extend=True)
    assert summary["resumed_from_step"] == 500 and summary["final_step"] == 501 and summary["total_steps"] == 750


def test_2_resuming_on_other_data_is_refused(tmp_path):
    lines = [f"{a}.bmp,{b}.bmp,warm,more,train" for a, b in ((0, 1), (1, 2), (2, 3), (0, 3))]
    lines += ["4.bmp,5.bmp,warm,less,test"]
    folder = crowd_folder(tmp_path / "mine", lines)
    config = make_config("pairs_csv", recipe="demo", attr="warm", data_dir=str(tmp_path / "tfds"), manual_dir=folder,
                         batch_pairs=2)
    workdir = str(tmp_path / "run")
    train(config, workdir, stop_after_steps=1)
    other = crowd_folder(tmp_path / "theirs", lines[:3] + ["0.bmp,2.bmp,warm,less,train", lines[-1]])
    with pytest.raises(UserError, match="other settings, which resuming would change: the data"):
        train(make_config("pairs_csv", recipe="demo", attr="warm", data_dir=str(tmp_path / "tfds"), manual_dir=other,
                          batch_pairs=2), workdir, stop_after_steps=1)


# 3. Scoring a few images costs a few images' forward pass ------------------------------------------------------

def test_3_a_few_images_are_padded_to_a_small_batch_not_to_the_batch_size(trained_run):
    assert [padded_size(n, 128) for n in (1, 2, 3, 5, 64, 100, 128)] == [1, 2, 4, 8, 64, 128, 128]
    assert padded_size(1, 128, multiple=2) == 2 and padded_size(3, 6, multiple=2) == 4
    ranker = relrank.load(trained_run[0], batch_size=16)
    seen, apply = [], ranker._apply[scores]
    ranker._apply[scores] = lambda params, x: (seen.append(len(x)), apply(params, x))[1]
    images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    one = ranker.score(images[:1])
    assert seen == [1]
    np.testing.assert_allclose(ranker.score(images)[:1], one, rtol=1e-5)
    assert seen == [1, 16, 16]  # more than a batch: every batch of one shape


# 4. Ranker.score takes what people pass; the pure function under it --------------------------------------------

def test_4_score_takes_paths_pil_images_and_numpy_or_jax_arrays_one_or_many(trained_run, tmp_path):
    ranker = relrank.load(trained_run[0])
    batch = np.random.default_rng(1).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    expected = ranker.score(batch)
    path = str(tmp_path / "one.png")
    Image.fromarray(batch[0]).save(path)
    close = dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ranker.score(jnp.asarray(batch)), expected, **close)
    np.testing.assert_allclose(ranker.score(batch.astype(np.float32) / 255), expected, **close)
    np.testing.assert_allclose(ranker.score(jnp.asarray(batch, jnp.float32)), expected, **close)
    for one in (path, tmp_path / "one.png", Image.fromarray(batch[0]), batch[0], jnp.asarray(batch[0])):
        np.testing.assert_allclose(ranker.score(one), expected[:1], **close)
    np.testing.assert_allclose(ranker.score([path, Image.fromarray(batch[1]), jnp.asarray(batch[2])]), expected, **close)
    assert ranker.score([]).shape == (0,)
    with pytest.raises(UserError, match="cannot score a int"):
        ranker.score(5)
    with pytest.raises(UserError, match=r"cannot score an array of shape \(2, 3, 5\)"):
        ranker.score(np.zeros((2, 3, 5)))
    with pytest.raises(UserError, match="cannot read a dict as an image"):
        ranker.score([{}])


def test_4_the_pure_scoring_function_works_with_jit_grad_vmap_and_export(trained_run):
    ranker = relrank.load(trained_run[0])
    f, params = ranker.score_fn, ranker.params
    x = jnp.asarray(np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    expected = ranker.score(np.asarray(x))
    np.testing.assert_allclose(jax.jit(f)(params, x)[:, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(jax.vmap(f, in_axes=(None, 0))(params, x[:, None])[:, 0, 0], expected, rtol=1e-4)
    grad = jax.grad(lambda pixels: f(params, pixels)[:, 0].sum())(x.astype(jnp.float32))
    assert grad.shape == x.shape and float(jnp.abs(grad).max()) > 0
    exported = jax.export.export(jax.jit(f))(params, jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.uint8))
    np.testing.assert_allclose(exported.call(params, x)[:, 0], expected, rtol=1e-5)


# 5. Notebooks: relrank leaves matplotlib's backend alone (the notebook itself: tests/test_use.py) ---------------

def test_5_importing_relrank_does_not_switch_matplotlibs_backend():
    code = ("import matplotlib, relrank.train.loop, relrank.use.figures, relrank.cli, relrank.use.saliency; "
            "print(matplotlib.get_backend())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "MPLBACKEND": "svg"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "svg"


# 6. embed without the viz extra: one line, before any work ---------------------------------------------------

def test_6_embed_without_scikit_learn_says_which_extra_before_any_work(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    assert main(["embed", f"--workdir={tmp_path / 'no_such_run'}"]) == 2
    assert "relrank[viz]" in last_error_line(capsys)


# 7. Figures readable without the command that made them ------------------------------------------------------

def test_7_the_sheet_prints_scores_with_the_digits_that_tell_them_apart():
    assert distinct_digits(np.array([0.5, 2.0])) == 3
    assert distinct_digits(np.array([1.23401, 1.23412, 7.0])) == 5
    assert distinct_digits(np.array([3.0, 3.0])) == 3  # equal scores stay equal


# 8. Crowd votes in pairs_csv ---------------------------------------------------------------------------------

def test_8_repeated_and_conflicting_votes_train_on_every_vote_and_test_by_majority(tmp_path, capsys):
    lines = ["0.bmp,1.bmp,warm,more,train", "0.bmp,1.bmp,warm,more,train", "1.bmp,0.bmp,warm,more,train",
             "1.bmp,2.bmp,warm,more,train", "2.bmp,0.bmp,warm,less,train",
             "3.bmp,4.bmp,warm,more,test", "4.bmp,3.bmp,warm,less,test", "4.bmp,3.bmp,warm,more,test",  # 2 to 1
             "3.bmp,5.bmp,warm,more,test", "3.bmp,5.bmp,warm,less,test",  # a draw: a tie, skipped
             "0.bmp,1.bmp,flat,equal,train", "1.bmp,2.bmp,flat,more,train",
             "4.bmp,5.bmp,flat,equal,test", "5.bmp,4.bmp,flat,equal,test"]
    folder = crowd_folder(tmp_path / "crowd", lines)
    data_dir = str(tmp_path / "tfds")
    data = load_dataset("pairs_csv", data_dir=data_dir, manual_dir=folder)
    assert "4 pairs annotated more than once (3 with different answers)" in capsys.readouterr().err
    train_votes = data.pairs("train", "warm")
    assert len(train_votes) == 5  # every vote
    test = data.pairs("test", "warm")
    names = {i: image_name(data, i) for i in np.concatenate([test.a, test.b])}
    by_pair = {tuple(sorted((names[a], names[b]))): (names[a], t) for a, b, t in zip(test.a, test.b, test.target)}
    assert by_pair == {("3.bmp", "4.bmp"): ("3.bmp", 1.0), ("3.bmp", "5.bmp"): ("3.bmp", 0.5)}
    with pytest.raises(UserError, match="(?s)duplicates line 2.*contradicts line 2"):
        load_dataset("pairs_csv", data_dir=data_dir, manual_dir=folder, unique_pairs=True)
    # An attribute whose test pairs are all ties has nothing to evaluate, which evaluate.py says.
    workdir = str(tmp_path / "run")
    assert train_main(["--dataset=pairs_csv", "--config=demo", "--attr=all", "--batch_pairs=2", "--stop_after_steps=1",
                       f"--data_dir={data_dir}", f"--manual_dir={folder}", f"--workdir={workdir}"]) == 0
    capsys.readouterr()
    assert evaluate_main([f"--workdir={workdir}"]) == 0
    table = capsys.readouterr().out
    assert "pairs_csv/flat: nothing to evaluate: every test pair is a tie" in table and "nan" not in table


# 9. A bad weights file is found before any data work, and a failed run leaves nothing behind -------------------

def test_9_a_damaged_weights_file_is_one_line_before_the_dataset_is_prepared(tmp_path, capsys):
    weights = tmp_path / "vgg16.pth"
    weights.write_bytes(b"not a state dict" * 100)
    fresh = tmp_path / "tfds"
    assert train_main(["--dataset=synthetic", f"--data_dir={fresh}", f"--workdir={tmp_path / 'run'}",
                       f"--weights={weights}"]) == 2
    line = last_error_line(capsys)
    assert "cannot read" in line and "vgg16.pth" in line
    assert not os.path.exists(fresh / "synthetic") and not os.path.exists(tmp_path / "run")


def test_9_a_run_that_fails_before_its_first_checkpoint_leaves_no_workdir(data_dir, tmp_path, capsys):
    assert train_main([f"--data_dir={data_dir}", f"--workdir={tmp_path / 'run'}", "--batch_pairs=100000"]) == 2
    assert re.search(r"--batch_pairs=100000 is more than the \d+ training pairs", last_error_line(capsys))
    assert not os.path.exists(tmp_path / "run")


# 10. Packaging ------------------------------------------------------------------------------------------------

def test_10_the_licence_and_every_dependency_are_explained():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(os.path.join(REPO, "LICENSE")) as f:
        assert "Apache License" in f.read(200)
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["license"]["text"] == "Apache-2.0" and project["urls"]
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        lines = f.read().split("dependencies = [", 1)[1].split("]", 1)[0].strip().splitlines()
    assert len(lines) == len(project["dependencies"]) and all("  # " in line for line in lines), lines


# 11. Silent wrong results ---------------------------------------------------------------------------------------

def test_11_a_changed_source_file_prepares_the_dataset_again(tmp_path, capsys):
    source, data_dir = pubfig_source(tmp_path), str(tmp_path / "tfds")
    before = load_dataset("pubfig", data_dir=data_dir, manual_dir=source)
    mat = scipy.io.loadmat(os.path.join(source, "data.mat"))
    mat["relative_ordering"] = mat["relative_ordering"].max() + 1 - mat["relative_ordering"]  # every ordering reversed
    scipy.io.savemat(os.path.join(source, "data.mat"), {k: v for k, v in mat.items() if not k.startswith("__")})
    capsys.readouterr()
    after = load_dataset("pubfig", data_dir=data_dir, manual_dir=source)
    assert "source files in" in capsys.readouterr().err
    attr = before.attributes[0]
    b, a = before.pairs("test", attr), after.pairs("test", attr)
    np.testing.assert_array_equal(a.a, b.a)
    counted = b.target != 0.5
    np.testing.assert_array_equal(a.target[counted], 1 - b.target[counted])
    assert before.identity != after.identity


def test_11_an_image_rewritten_with_its_size_and_mtime_kept_is_noticed(tmp_path, capsys):
    folder = crowd_folder(tmp_path / "mine", ["0.bmp,1.bmp,warm,more,train", "2.bmp,3.bmp,warm,less,test"], 4)
    data_dir = str(tmp_path / "tfds")
    before = load_dataset("pairs_csv", data_dir=data_dir, manual_dir=folder)
    row = lambda data: next(r for r in range(len(data.source)) if image_name(data, r) == "0.bmp")  # noqa: E731
    stored = before.source[row(before)]["image"]
    path = os.path.join(folder, "images", "0.bmp")
    stat = os.stat(path)
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path)  # what cp -p or rsync -a leave: same size, same mtime
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.path.getsize(path) == stat.st_size
    capsys.readouterr()
    after = load_dataset("pairs_csv", data_dir=data_dir, manual_dir=folder)
    assert "changed since it was prepared" in capsys.readouterr().err
    assert Image.open(io.BytesIO(after.source[row(after)]["image"])).getpixel((0, 0)) == (1, 2, 3)
    assert stored != after.source[row(after)]["image"]


def test_11_runs_and_seed_folders_never_share_a_workdir(trained_run, data_dir, tmp_path, capsys):
    workdir = copy_run(trained_run, tmp_path)
    assert train_main([f"--data_dir={data_dir}", f"--workdir={workdir}", "--seeds=2"]) == 2
    assert "holds a single run; --seeds=2 would put seed_N/" in last_error_line(capsys)
    copy_run(trained_run, tmp_path / "seeds", "seed_0")
    assert train_main([f"--data_dir={data_dir}", f"--workdir={tmp_path / 'seeds'}"]) == 2
    assert "holds seed_N/ runs of --seeds" in last_error_line(capsys)


# 12. Nothing blocks forever ---------------------------------------------------------------------------------------

def test_12_a_fifo_among_the_images_is_skipped_and_named_if_given(trained_run, tmp_path, capsys):
    folder = tmp_path / "images"
    os.makedirs(folder)
    Image.new("RGB", (20, 20), "red").save(folder / "red.png")
    os.mkfifo(folder / "pipe.jpg")
    out = str(tmp_path / "ranking.csv")
    assert main(["score", f"--workdir={trained_run[0]}", str(folder), f"--out={out}"]) == 0
    assert "scored 1 images" in capsys.readouterr().out
    with pytest.raises(UserError, match="pipe.jpg: it is not a regular file"):
        relrank.load(trained_run[0]).score(str(folder / "pipe.jpg"))


# 13. A workdir whose path holds '#' or '?' -----------------------------------------------------------------------

def test_13_a_workdir_named_with_hash_and_question_mark_loads(trained_run, tmp_path, capsys):
    workdir = copy_run(trained_run, tmp_path, "run #2?")
    assert relrank.load(workdir).step == 500
    assert evaluate_main([f"--workdir={workdir}"]) == 0
    assert "unreadable" not in capsys.readouterr().err


# 14. Tracebacks turned into one line, and what must not be lost ----------------------------------------------------

def test_14_a_step_deleted_while_it_is_read_is_not_called_damaged(trained_run, tmp_path, monkeypatch):
    from relrank.use import ranker

    workdir = copy_run(trained_run, tmp_path)
    real, deleted = ranker._restore, []

    def restore_while_a_run_rotates(checkpoints, step):
        if not deleted:  # the training run deletes this step just as it is read
            deleted.append(step)
            shutil.rmtree(os.path.join(checkpoints.directory, str(step)))
        return real(checkpoints, step)

    monkeypatch.setattr(ranker, "_restore", restore_while_a_run_rotates)
    loaded = relrank.load(workdir)
    assert deleted == [500] and loaded.step == 400


def test_14_a_truncated_metrics_file_in_a_step_is_set_aside_by_training(trained_run, data_dir, tmp_path, capsys):
    workdir = copy_run(trained_run, tmp_path)
    with open(os.path.join(workdir, "checkpoints", "500", "metrics", "metrics"), "r+") as f:
        f.truncate(5)
    assert evaluate_main([f"--workdir={workdir}"]) == 2
    line = last_error_line(capsys)
    assert "step 500" in line and "metrics file is damaged" in line
    summary = train(trained_config(data_dir), workdir, stop_after_steps=1)
    assert summary["resumed_from_step"] == 400 and summary["final_step"] == 401
    assert os.path.isdir(os.path.join(workdir, "unreadable_checkpoints", "500"))


def test_14_two_first_preparations_in_one_data_dir_take_turns_and_clean_up(tmp_path):
    source, data_dir = pubfig_source(tmp_path), tmp_path / "tfds"
    left_over = data_dir / "pubfig" / "incomplete.ABC123_1.0.0"
    os.makedirs(left_over)
    code = (f"from relrank.data.datasets import load_dataset; d = load_dataset('pubfig', data_dir={str(data_dir)!r}, "
            f"manual_dir={source!r}); print(len(d.source))")
    started = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in started]
    for p, (out, err) in zip(started, outputs):
        assert p.returncode == 0, err[-2000:]
    counts = [out.strip().splitlines()[-1] for out, _ in outputs]
    assert counts[0] == counts[1] and int(counts[0]) > 0
    assert not left_over.exists()


def test_14_a_failing_input_pipeline_keeps_the_steps_done_in_a_checkpoint(data_dir, tmp_path, monkeypatch):
    real = batches.table_batches

    def dies_after_7_batches(*args, **kwargs):
        for k, batch in enumerate(real(*args, **kwargs)):
            if k == 7:
                raise RuntimeError("worker process 1 died")
            yield batch

    monkeypatch.setattr(batches, "table_batches", dies_after_7_batches)
    workdir = str(tmp_path / "run")
    with pytest.raises(UserError, match=r"reading the training batches failed after step 7 \(RuntimeError: worker "
                                        r"process 1 died\); last checkpoint: step 7; rerun"):
        train(make_config(attr="brightness", data_dir=data_dir, epochs=1), workdir)
    assert relrank.load(workdir).step == 7


@pytest.mark.parametrize("damage", ["array_record", "pair_index.npz", "dataset_info.json", "metadata.json"])
def test_14_a_damaged_prepared_file_is_prepared_again(tmp_path, capsys, damage):
    source, data_dir = pubfig_source(tmp_path), str(tmp_path / "tfds")
    before = load_dataset("pubfig", data_dir=data_dir, manual_dir=source)
    version = os.path.join(data_dir, "pubfig", "1.0.0")
    path = next(os.path.join(version, f) for f in sorted(os.listdir(version)) if damage in f)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    capsys.readouterr()
    after = load_dataset("pubfig", data_dir=data_dir, manual_dir=source)
    assert "its files changed since they were written" in capsys.readouterr().err
    assert after.identity == before.identity and len(after.source) == len(before.source)
    assert after.source[3]["image"] == before.source[3]["image"]


def test_14_a_damaged_ranksvm_file_is_one_line(tmp_path, capsys):
    source, workdir = pubfig_source(tmp_path), str(tmp_path / "svm")
    assert train_main(["--dataset=pubfig", "--method=ranksvm", f"--data_dir={tmp_path / 'tfds'}",
                       f"--manual_dir={source}", f"--workdir={workdir}"]) == 0
    path = os.path.join(workdir, "ranksvm.npz")
    with open(path, "r+b") as f:
        f.truncate(100)
    assert evaluate_main([f"--workdir={workdir}"]) == 2
    assert "ranksvm.npz is damaged" in last_error_line(capsys)


@pytest.mark.parametrize("text, message", [
    ("def get_config(dataset):\n    return dict(epochs=2\n", "line 2"),
    ("def get_config(dataset):\n    return dict(epochs='3')\n", "field epochs is '3' (a str), expected int"),
    ("def get_config(dataset):\n    return dict(dropout=[0.1])\n", "field dropout is [0.1] (a list), expected float"),
    ("def get_config(dataset):\n    return 3\n", "must return a dict"),
])
def test_14_a_broken_recipe_file_names_the_line_or_field(tmp_path, capsys, text, message):
    recipe = tmp_path / "mine.py"
    recipe.write_text(text)
    assert train_main([f"--config={recipe}", f"--workdir={tmp_path / 'run'}"]) == 2
    assert message in last_error_line(capsys)


def test_14_a_full_disk_while_checkpointing_keeps_the_earlier_checkpoints(trained_run, data_dir, tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    workdir = copy_run(trained_run, tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full)
    with pytest.raises(UserError, match=r"the disk is full: checkpoint step 501 could not be written .* the earlier "
                                        r"checkpoints \(.*400, 500\) are kept"):
        train(trained_config(data_dir, epochs=3), workdir, stop_after_steps=1, extend=True)
    monkeypatch.undo()
    assert relrank.load(workdir).step == 500


def test_14_environment_and_flag_mistakes_are_one_line(trained_run, tmp_path, capsys, monkeypatch):
    workdir = trained_run[0]
    with pytest.raises(UserError, match="port in 1-65535"):
        distributed.initialize("localhost:70000", 2, 1)
    a_file = tmp_path / "file"
    a_file.write_text("")
    monkeypatch.setenv("TFDS_DATA_DIR", str(a_file))
    assert train_main([f"--workdir={tmp_path / 'run'}"]) == 2
    assert "is a file, not a folder" in last_error_line(capsys)
    monkeypatch.delenv("TFDS_DATA_DIR")
    monkeypatch.setenv("HOME", str(a_file))  # ~/tensorflow_datasets cannot be made
    assert train_main([f"--workdir={tmp_path / 'run'}"]) == 2
    assert "cannot create the data directory" in last_error_line(capsys)
    monkeypatch.undo()
    for flags, message in ((["--stop_after_steps=0"], "--stop_after_steps must be at least 1"),
                           (["--stop_after_steps=-3"], "--stop_after_steps must be at least 1")):
        assert train_main([f"--workdir={tmp_path / 'run'}", *flags]) == 2
        assert message in last_error_line(capsys)
    for n in ("0", "1", "-5"):
        assert main(["embed", f"--workdir={workdir}", f"--max_images={n}"]) == 2
        assert "--max_images must be at least 5" in last_error_line(capsys)
    image = str(tmp_path / "a.png")
    Image.new("RGB", (20, 20), "red").save(image)
    for sigma in ("-1", "nan"):
        assert main(["saliency", f"--workdir={workdir}", image, image, f"--sigma={sigma}",
                         f"--out={tmp_path / 's.png'}"]) == 2
        assert "--sigma must be a number >= 0" in last_error_line(capsys)
    out = tmp_path / "ranking.csv"
    assert main(["score", f"--workdir={workdir}", image, f"--out={out}", f"--sheet={tmp_path / 'sheet.xyz'}"]) == 2
    assert ".xyz is not an image format" in last_error_line(capsys) and not out.exists()
    assert main(["saliency", f"--workdir={workdir}", image, image, f"--out={tmp_path / 's.docx'}"]) == 2
    assert ".docx is not an image format" in last_error_line(capsys)
    assert main(["convert", image, str(tmp_path)]) == 2
    assert "is a folder" in last_error_line(capsys)
    assert main(["convert", image, str(tmp_path / "missing" / "w.safetensors")]) == 2
    assert "does not exist" in last_error_line(capsys)
    monkeypatch.setattr("relrank.model.weights.convert", lambda source, target: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied")))  # a read-only place (root writes anywhere)
    assert main(["convert", image, str(tmp_path / "w.safetensors")]) == 2
    assert "cannot write" in last_error_line(capsys)


def test_14_weights_whose_preprocessing_has_the_wrong_length_are_one_line(tmp_path):
    path = str(tmp_path / "w.safetensors")
    save_file({"conv1_1.kernel": np.zeros((3, 3, 3, 64), np.float32)}, path,
              metadata={"preprocessing": json.dumps(dict(channel_order="RGB", scale=1 / 255, mean=[0.5, 0.5],
                                                         std=[0.2, 0.2, 0.2]))})
    with pytest.raises(UserError, match=r"its preprocessing mean is \[0.5, 0.5\]; expected 3 numbers"):
        make_config(weights=path)


def test_14_a_platform_the_machine_lacks_is_one_line(tmp_path):
    result = run_cli("train.py", f"--workdir={tmp_path / 'run'}", env={"JAX_PLATFORMS": "gpu"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "JAX cannot use the accelerator JAX_PLATFORMS=gpu asks for" in result.stderr.strip().splitlines()[-1]
