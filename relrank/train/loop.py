"""The training loop, top to bottom: open the data; set up (checks, batches, restore or initialise, compile);
loop over steps with the periodic actions (log, evaluate, checkpoint); finish (final evaluation, summary).

Ctrl-C and SIGTERM are held while a step or a checkpoint runs, and handled in one place (`Training.run`):
a checkpoint is saved and `Interrupted` says where to resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from relrank.config import Config, dumps
from relrank.data import batches, streaming
from relrank.data.datasets import RankingData, SplitImages, StoredImages, load_dataset_for
from relrank.data.pairs import LabelledPairs, hold_out
from relrank.errors import UserError
from relrank.evaluation.evaluator import evaluate
from relrank.model.network import apply_in_batches, jit_apply
from relrank.model.registry import trunk_blocks
from relrank.model.weights import check_weights, starting_params
from relrank.parallel import distributed, sharding
from relrank.run.backbone import has_frozen_backbone, save_backbone
from relrank.run.checkpoints import SELECTION_METRICS
from relrank.run.workdir import check_usable, exclusive, remove_if_unused, write_atomic
from relrank.train import augment, signals
from relrank.train.cached_features import attach_features, uses_cached_activations, uses_cached_features
from relrank.train.log import CURVES_FILE, TrainingLog, plot_curves
from relrank.train.monitor import LearningMonitor
from relrank.train.resume import interrupted, last_checkpoint, restore_or_init
from relrank.train.step import jit_train_step, make_task

ETA_AFTER_STEPS = 20  # steps timed for the estimate of the time left
STOP_CHECK_EVERY = 10  # steps between the agreements of several processes on whether one was interrupted


def train(config: Config, workdir: str, stop_after_steps: int | None = None, data: RankingData | None = None,
          extend: bool = False) -> dict:
    """Train (or resume) a ranker for `config.attrs` (one output each); returns a summary of the run.

    Re-running on a workdir that holds a checkpoint resumes from it exactly
    (parameters, optimizer state, RNG and data order). `stop_after_steps`
    ends the run early with a checkpoint, as an interruption would. Ctrl-C or
    SIGTERM save a checkpoint and raise `Interrupted`; one process at a time
    may train in a workdir. A resume with settings that change the run's meaning
    is refused, except more epochs with `extend`. `data` is the opened dataset,
    if the caller has it.
    """
    started = time.perf_counter()
    check_usable(workdir)
    if config.weights and data is None:  # a caller that opened the data checked the weights before it (the CLI)
        check_weights(config)
    new_workdir = not os.path.exists(workdir)
    try:
        with signals.sigterm_as_keyboard_interrupt():
            try:
                config, train_split, eval_splits = _open_splits(config, data or load_dataset_for(config))
                with exclusive(workdir) if distributed.is_main() else contextlib.nullcontext():
                    return _train(config, workdir, train_split, eval_splits, stop_after_steps, started, extend)
            except KeyboardInterrupt:
                raise interrupted(workdir) from None
    except BaseException:
        if new_workdir and distributed.is_main():
            remove_if_unused(workdir)
        raise


def _open_splits(config: Config, data: RankingData) -> tuple[Config, SplitImages, dict[str, SplitImages]]:
    """(config with the data's identity, the training split, the evaluated splits: test, and val if held out),
    their images not read yet."""
    config = dataclasses.replace(config, data_identity=data.identity)
    train_pairs = data.pairs_of("train", config.attrs)
    eval_pairs = dict(test=data.pairs_of("test", config.attrs))
    if config.val_fraction:
        train_pairs, eval_pairs["val"] = hold_out(train_pairs, config.val_fraction, config.seed)
    train_split = data.split_images(train_pairs, augment.train_size(config), "train", in_memory=False)
    eval_splits = {name: data.split_images(pairs, config.image_size, name, in_memory=False)
                   for name, pairs in eval_pairs.items()}
    return config, train_split, eval_splits


def _load_if_it_fits(config: Config, train_split: SplitImages, eval_splits: dict[str, SplitImages]) -> None:
    """Decode every split's images into tables in memory, unless they are to stream (`_keep_in_memory`)."""
    if _keep_in_memory(config, [train_split, *eval_splits.values()]):
        for name, split in [("train", train_split), *eval_splits.items()]:
            split.images = split.images.load(f"loading {name} images")


def _keep_in_memory(config: Config, splits: list[SplitImages]) -> bool:
    """Whether the splits' images go into tables in memory (else they stream): --input_pipeline, or by size."""
    if config.input_pipeline != "auto":
        return config.input_pipeline == "memory"
    needed = sum(streaming.table_bytes(len(split.ids), split.images.size) for split in splits)
    if needed <= streaming.memory_budget():
        return True
    if distributed.is_main():
        print(f"streaming the images: their tables would take {needed / 2**30:.1f} GiB, more than "
              f"{streaming.memory_budget() / 2**30:.1f} GiB (--input_pipeline=memory to load them anyway)", file=sys.stderr)
    return False


def _train(config: Config, workdir: str, train_split: SplitImages, eval_splits: dict[str, SplitImages],
           stop_after_steps: int | None, started: float, extend: bool) -> dict:
    """Set up, restore or initialise, compile, loop and finish; the run's summary."""
    distributed.check_same_config(config)
    mesh = sharding.global_mesh()
    train_pairs = _training_pairs(config, train_split, mesh)
    per_epoch = batches.steps_per_epoch(len(train_pairs), config.batch_pairs, config.batch_images)
    total_steps = config.epochs * per_epoch
    frozen, about_features, inputs = None, {}, "images"
    # Only the ranking layer trains, on each image's features computed once; a frozen run checkpointed before
    # this path existed (whole-network checkpoints, no backbone file) resumes as it was trained.
    if uses_cached_features(config) and (has_frozen_backbone(workdir) or last_checkpoint(workdir) is None):
        frozen, about_features = _frozen_features(config, workdir, [train_split, *eval_splits.values()], mesh)
        inputs = "features"
    elif uses_cached_activations(config):  # the last blocks train on activations; checkpoints hold every layer
        about_features = attach_features(config, starting_params(config), [train_split, *eval_splits.values()], mesh)
        inputs = "activations"
    else:
        _load_if_it_fits(config, train_split, eval_splits)
    checkpoints, config, state, resumed_from = restore_or_init(config, workdir, mesh, total_steps, extend, frozen)
    if distributed.is_main():
        write_atomic(os.path.join(workdir, "config.json"), dumps(config))
    start_step = int(state.step)
    end_step = total_steps if stop_after_steps is None else min(total_steps, start_step + stop_after_steps)
    plans = batches.BatchPlans(train_pairs, len(train_split.ids), config.batch_pairs, config.seed, config.batch_images)
    rows = sharding.process_rows(plans.images_per_batch, mesh)  # this process's share of each batch's images
    streamed = isinstance(train_split.images, StoredImages)
    if streamed:
        local_batches = streaming.streaming_batches(plans, train_split.images, start_step, end_step, rows,
                                                    config.data_workers or streaming.default_workers())
    else:
        local_batches = batches.table_batches(plans, train_split.images, start_step, end_step, rows)
    training = Training(config, workdir, mesh, checkpoints, sharding.put_replicated(state, mesh), eval_splits,
                        per_epoch, total_steps, start_step, end_step, started, inputs)
    try:
        try:
            all_batches, compile_seconds = training.compile(batches.prefetch(sharding.put_batch(b, mesh)
                                                                              for b in local_batches))
            training.run(all_batches)
        finally:
            training.bar.close()
            if hasattr(local_batches, "close"):  # grain's workers and their shared memory, before the interpreter exits
                local_batches.close()
        return training.finish(dict(
            dataset=config.dataset, attr=config.attr, workdir=workdir, compile_seconds=round(compile_seconds, 2),
            steps_per_epoch=per_epoch, total_steps=total_steps, resumed_from_step=resumed_from,
            input_pipeline="streaming" if streamed else "memory", **about_features))
    finally:
        training.log.close()


def _frozen_features(config: Config, workdir: str, splits: list[SplitImages], mesh) -> tuple[dict, dict]:
    """(the whole network's starting parameters, what was cached): every split's images become their features,
    computed with the starting backbone (the weights file's, or the seed's random init: the cache is keyed by
    them), which is saved in the workdir once for the ranker to load."""
    params = starting_params(config)
    if distributed.is_main() and not has_frozen_backbone(workdir):
        save_backbone(workdir, params)
    return params, attach_features(config, params, splits, mesh)


def _training_pairs(config: Config, train_split: SplitImages, mesh) -> LabelledPairs:
    """The training pairs of every attribute joined, once the batch sizes are checked against them and the mesh."""
    if config.batch_images:
        sharding.check_divisible(config.batch_images, mesh, "--batch_images")
        if config.batch_images > len(train_split.ids):
            raise UserError(f"--batch_images={config.batch_images} is more than the {len(train_split.ids)} training images")
    else:
        sharding.check_divisible(config.batch_pairs, mesh, "--batch_pairs")
    sharding.check_divisible(config.eval_batch_images, mesh, "--eval_batch_images")
    train_pairs = LabelledPairs.join([train_split.pairs[attr] for attr in config.attrs])
    if not config.batch_images and config.batch_pairs > len(train_pairs):
        raise UserError(f"--batch_pairs={config.batch_pairs} is more than the {len(train_pairs)} training pairs "
                        f"(every step would repeat pairs); give --batch_pairs={len(train_pairs)} or fewer")
    return train_pairs


class Training:
    """One run's loop state and its periodic actions: log, evaluate, checkpoint."""

    def __init__(self, config: Config, workdir: str, mesh, checkpoints, state, eval_splits: dict[str, SplitImages],
                 per_epoch: int, total_steps: int, start_step: int, end_step: int, started: float,
                 inputs: str = "images"):
        self.config, self.workdir, self.mesh, self.checkpoints, self.state = config, workdir, mesh, checkpoints, state
        self.eval_splits, self.per_epoch, self.total_steps = eval_splits, per_epoch, total_steps
        self.start_step, self.end_step, self.started = start_step, end_step, started
        self.task = make_task(config, total_steps, inputs)
        self.score_fn = jit_apply(self.task.network, mesh)
        self.monitor = LearningMonitor(config.attrs, total_steps, per_epoch, round(config.warmup_fraction * total_steps))
        self.log = TrainingLog(workdir, per_epoch, start_step, self._last_checkpoint,
                               on_interval=lambda metrics: self.report(self.monitor.steps(metrics)))
        self.val_pairs = sum(int(np.sum(p.target != 0.5)) for p in eval_splits["val"].pairs.values()) \
            if "val" in eval_splits else 0
        self.evaluation, self.evaluated_step = None, None
        # Several processes stop together: a signal to any of them is only noted, and every STOP_CHECK_EVERY
        # steps they agree (a collective) whether one was signalled; then all save the same step and stop.
        self.together = jax.process_count() > 1
        self.stop_requested: list[int] = []
        if distributed.is_main():
            print(describe_run(config, per_epoch, total_steps, start_step, inputs), file=sys.stderr)
        self.bar = tqdm(total=end_step, initial=start_step, desc=f"{config.dataset}/{_attrs_label(config)}",
                        unit="step", disable=not distributed.is_main())

    def compile(self, all_batches):
        """(the batches, seconds spent compiling the step on the first of them)."""
        start = time.perf_counter()
        first = next(all_batches, None)
        if first is None:
            return iter(()), 0.0
        try:
            self.step_fn = jit_train_step(self.task, self.mesh).lower(self.state, first).compile()
        except Exception as error:
            raise _out_of_memory(error, self.config) or error
        self.loop_start = time.perf_counter()
        return itertools.chain([first], all_batches), self.loop_start - start

    def run(self, all_batches) -> None:
        """The loop; an interruption, a failed input pipeline or an error ends it here, with a checkpoint if it can."""
        try:
            with signals.deferred(self.stop_requested) if self.together else contextlib.nullcontext():
                for step, batch in enumerate(all_batches, start=self.start_step + 1):
                    self.train_step(step, batch)
                    self.periodic_actions(step)
                    if self.together and step % STOP_CHECK_EVERY == 0 and distributed.any_process(bool(self.stop_requested)):
                        raise KeyboardInterrupt
                    if self.monitor.collapsed:
                        break
        except KeyboardInterrupt:
            self.save_before_stopping(keep_steps=True)
            raise interrupted(self.workdir, by_peer=self.together and not self.stop_requested) from None
        except batches.InputFault as fault:  # the state is intact: keep the steps since the last checkpoint
            self.save_before_stopping(keep_steps=not self.together)
            last = last_checkpoint(self.workdir)
            raise UserError(f"reading the training batches failed after step {int(self.state.step)} ({fault}); "
                            f"{'no checkpoint yet' if last is None else f'last checkpoint: step {last}'}; "
                            f"rerun the same command to resume") from None
        except BaseException as error:
            self.save_before_stopping(keep_steps=False)
            oom = _out_of_memory(error, self.config) if isinstance(error, Exception) else None
            if oom:
                raise oom from None
            raise

    def train_step(self, step: int, batch: dict) -> None:
        with signals.deferred() as received:  # the step donates its input state: never stop half-way
            self.state, metrics = self.step_fn(self.state, batch)
        self.stop_on(received)
        self.log.add(step, metrics, images=len(batch["images"]))
        self.bar.update(1)
        if step == self.start_step + ETA_AFTER_STEPS and distributed.is_main():
            jax.block_until_ready(metrics)  # steps run asynchronously: time them done
            seconds = (time.perf_counter() - self.loop_start) / ETA_AFTER_STEPS * (self.end_step - step)
            self.bar.write(f"about {_duration(seconds)} of training left ({self.end_step - step} steps)", file=sys.stderr)

    def periodic_actions(self, step: int) -> None:
        """Log every --log_every_steps; evaluate and checkpoint every --eval_every_epochs and at the end; checkpoint
        every --checkpoint_every_steps, at the last step asked for, and when the run collapsed."""
        evaluate_now = step % (self.per_epoch * self.config.eval_every_epochs) == 0 or step == self.total_steps
        if step % self.config.log_every_steps == 0 or evaluate_now:
            self.flush()
        if evaluate_now:
            self.evaluation, self.evaluated_step = self.evaluate(step), step
            self.log.write(step=step, epoch=round(step / self.per_epoch, 4),
                           seconds=round(time.perf_counter() - self.started, 1), **self.evaluation)
            shown = ", ".join(f"{name.replace('_', ' ')} {value:.2f}%" for name, value in self.evaluation.items()
                              if name.endswith("_accuracy"))
            if distributed.is_main():
                self.bar.write(f"epoch {step / self.per_epoch:g}: {shown}")
            self.save(step, {name: v for name, v in self.evaluation.items() if name in SELECTION_METRICS})
        elif step % self.config.checkpoint_every_steps == 0 or step == self.end_step or self.monitor.collapsed:
            self.save(step)

    def evaluate(self, step: int) -> dict:
        """{val_accuracy (if held out), test_accuracy: means over attributes; <split>_accuracy_per_attr}, with
        what the learning monitor finds in the scores reported."""
        row, scores_of = {}, {}
        for name in sorted(self.eval_splits, reverse=True):  # val first: it selects the best checkpoint
            split = self.eval_splits[name]
            result = evaluate(functools.partial(self.score, desc=f"scoring {name}"), split.images, split.pairs)
            scores_of[name] = result.scores
            row[f"{name}_accuracy"] = result.mean
            row[f"{name}_pairs"] = {attr: int(np.sum(p.target != 0.5)) for attr, p in split.pairs.items()}  # counted
            if len(result.accuracy) > 1:
                row[f"{name}_accuracy_per_attr"] = result.accuracy
        val = (row["val_accuracy"], self.val_pairs) if "val_accuracy" in row else None
        self.report(self.monitor.evaluation(step, scores_of, val))
        return row

    def score(self, images, desc: str) -> np.ndarray:
        """Scores [images, attributes] of the current parameters."""
        return apply_in_batches(lambda x: self.score_fn(self.state.params, sharding.put_images(x, self.mesh)), images,
                                self.config.eval_batch_images, desc=desc, multiple=self.mesh.size)

    def report(self, findings: list) -> None:
        """Say at once what the learning monitor found, on stderr and in the log."""
        for finding in findings:
            self.log.write(step=finding.step, learning=finding.kind, message=finding.message())
            if distributed.is_main():
                self.bar.write(f"warning: {finding.message()}", file=sys.stderr)

    def flush(self) -> None:
        row = self.log.flush()
        if row:
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.0f}")

    def save(self, step: int, metrics: dict | None = None) -> None:
        self.flush()
        with signals.deferred() as received:  # never half-started
            self.checkpoints.save(step, self.state, self.config, metrics)
        self.stop_on(received)

    def stop_on(self, received: list[int]) -> None:
        """Act on signals held back: stop now (one process), or note them for the next agreement (several)."""
        if received and self.together:
            self.stop_requested.extend(received)
        elif received:
            raise KeyboardInterrupt

    def save_before_stopping(self, keep_steps: bool) -> None:
        """Wait for the checkpoints being written; first save the current step if `keep_steps`."""
        with signals.deferred():  # a second Ctrl-C must not cut the checkpoint short
            if keep_steps and int(self.state.step) != self.checkpoints.latest_step():
                self.save(int(self.state.step))
            self.checkpoints.wait()

    def _last_checkpoint(self) -> str:
        last = self.checkpoints.latest_step()
        return f"step {last} in {self.checkpoints.directory}" if last is not None else "none"

    def finish(self, summary: dict) -> dict:
        """The final evaluation (if the run ended without one), summary.json and curves.png, whatever signal arrives."""
        with signals.deferred() as received:
            self.checkpoints.wait()
            best = self.checkpoints.best_step()
            self.checkpoints.close()
            final_step = int(self.state.step)
            ended = self.end_step == self.total_steps or self.monitor.collapsed
            if self.evaluated_step != final_step and ended and not received:
                self.evaluation = self.evaluate(final_step)
            verdict = self.monitor.verdict()
            summary.update(dict(test_accuracy=None), **(self.evaluation or {}))
            loop_seconds = time.perf_counter() - self.loop_start if hasattr(self, "loop_start") else 0.0
            summary.update(final_step=final_step, best_step=best, wall_seconds=round(time.perf_counter() - self.started, 1),
                           loop_seconds=round(loop_seconds, 1),
                           learned=verdict is None, did_not_learn=verdict.to_json() if verdict else None,
                           learning_findings=[f.to_json() for f in self.monitor.findings], **streaming.peak_memory_mib())
            if distributed.is_main() and os.path.exists(self.log.path):
                title = f"{self.config.dataset} / {_attrs_label(self.config)}"
                summary["curves"] = plot_curves(self.log.path, os.path.join(self.workdir, CURVES_FILE), title)
            if distributed.is_main():
                write_atomic(os.path.join(self.workdir, "summary.json"), json.dumps(summary, indent=2))
        if received:
            raise interrupted(self.workdir)
        return summary


def _out_of_memory(error: Exception, config: Config) -> UserError | None:
    """A one-line error for the accelerator (or XLA on the CPU) running out of memory, else None."""
    if "RESOURCE_EXHAUSTED" not in str(error) and "Out of memory" not in str(error):
        return None
    batch = f"--batch_images={config.batch_images}" if config.batch_images else f"--batch_pairs={config.batch_pairs}"
    return UserError(f"out of memory training {config.model} at {config.image_size} px with {batch}: lower it, "
                     f"--image_size, or use --compute_dtype=bfloat16 ({str(error).splitlines()[0][:160]})")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def describe_run(config: Config, per_epoch: int, total_steps: int, start_step: int, inputs: str = "images") -> str:
    """One line saying what is about to train: recipe, model, input size, what trains on what, steps."""
    batch = f"{config.batch_images} images" if config.batch_images else f"{config.batch_pairs} pairs"
    weights = f"weights {os.path.basename(config.weights)}" if config.weights else "random init"
    resumed = f", resuming at step {start_step}" if start_step else ""
    if inputs == "features":
        weights += ", frozen: the ranking layer trains on cached features"
    elif inputs == "activations":
        frozen = trunk_blocks(config)
        weights += (f", blocks {frozen + 1}-{frozen + config.train_blocks} of {frozen + config.train_blocks}, "
                    f"the head convolution and ranking layer train on the cached activations of the blocks before"
                    f"{' (and of mirror images)' if config.flip else ''}")
    return (f"recipe {config.recipe}: {config.model} at {config.image_size} px from {weights}, dropout "
            f"{config.spec.dropout:g}, {config.optimizer} {config.backbone_lr:g}/{config.head_lr:g} ({config.schedule}); "
            f"{total_steps} steps = {config.epochs} epoch{'s' if config.epochs > 1 else ''} of {per_epoch} steps of "
            f"{batch}{resumed}")


def _attrs_label(config: Config) -> str:
    return config.attr if len(config.attrs) == 1 else f"{len(config.attrs)} attributes"
