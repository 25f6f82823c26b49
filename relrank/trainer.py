"""The training loop: data, model, jit-compiled step, evaluation, logs and checkpoints."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import sys
import time
from typing import Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from relrank import augment, checkpoint, distributed, input_pipeline, sharding, signals, streaming
from relrank.config import Config, dumps
from relrank.data import LabelledPairs, RankingData, SplitImages, StoredImages, hold_out, load_dataset_for
from relrank.errors import Interrupted, UserError
from relrank.figures import plot_curves
from relrank.learning import LearningMonitor
from relrank.metrics import accuracy_per_attribute
from relrank.network import apply_in_batches, init_params, initial_params, jit_apply
from relrank.train_step import init_state, jit_train_step, make_task
from relrank.weights import check_weights
from relrank.workdir import check_usable, exclusive, read_jsonl, remove_if_unused, write_atomic


class MetricsLog:
    """<workdir>/metrics.jsonl: training metrics averaged over each logging interval, and evaluations.

    Step metrics stay on the device until `flush`, so logging never waits for a step to finish.
    Processes other than 0 check the loss but write nothing.
    """

    def __init__(self, path: str, steps_per_epoch: int, last_checkpoint: Callable[[], str],
                 on_interval: Callable[[list[tuple[int, dict]]], None] = lambda metrics: None):
        self.path = path
        self.on_interval = on_interval
        self.writes = distributed.is_main()
        self.steps_per_epoch = steps_per_epoch
        self.last_checkpoint = last_checkpoint
        self.pending: list[tuple[int, dict]] = []
        self.interval_start, self.interval_images = time.perf_counter(), 0

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (by a run that stopped before checkpointing them) and broken lines."""
        if self.writes and os.path.exists(self.path):
            rows = [r for r in read_jsonl(self.path) if r.get("step", 0) <= step]
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def add(self, step: int, metrics: dict, images: int) -> None:
        self.pending.append((step, metrics))
        self.interval_images += images

    def flush(self) -> dict | None:
        """Fetch the pending metrics, stop on a non-finite loss, and write their mean as one row."""
        if not self.pending:
            return None
        fetched = [(s, {k: float(v) for k, v in m.items()}) for s, m in self.pending]
        self.pending = []
        for s, m in fetched:
            if not math.isfinite(m["loss"]):
                raise UserError(f"loss became {m['loss']} at step {s}; training stopped. "
                                f"Last good checkpoint: {self.last_checkpoint()}")
        elapsed = time.perf_counter() - self.interval_start
        counted = sum(m["pairs_counted"] for _, m in fetched)
        row = dict(
            step=fetched[-1][0], epoch=round(fetched[-1][0] / self.steps_per_epoch, 4),
            loss=float(np.mean([m["loss"] for _, m in fetched])),
            rank_loss=float(np.mean([m["rank_loss"] for _, m in fetched])),
            train_pair_accuracy=round(100 * sum(m["pairs_correct"] for _, m in fetched) / counted, 2) if counted else None,
            score_spread=float(min(m["score_spread"] for _, m in fetched)),
            images_per_s=round(self.interval_images / max(elapsed, 1e-9), 1),
        )
        self.write(**row)
        self.on_interval(fetched)
        self.interval_start, self.interval_images = time.perf_counter(), 0
        return row

    def write(self, **row) -> None:
        if not self.writes:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def _check_resumable(saved: Config, config: Config, workdir: str, extend: bool) -> None:
    """A one-line error when `config` would change what the run saved in `workdir` means (any field but the
    HOW_RUN_FIELDS, which may change); with `extend`, a finished run may be given more epochs."""
    old, new = saved.meaning(), config.meaning()
    if not saved.data_identity or not config.data_identity:  # a run saved before relrank recorded it
        old.pop("data_identity"), new.pop("data_identity")
    changed = [k for k in new if old.get(k) != new[k] and not k.startswith("preprocessing.")]
    if extend and changed == ["epochs"] and new["epochs"] > old["epochs"]:
        return
    if not changed:
        return
    shown = ", ".join("the data (its pairs or images changed, or --manual_dir names other data)" if k == "data_identity"
                      else f"{k} {old.get(k)!r} -> {new[k]!r}" for k in changed)
    hint = "use another --workdir (or delete this one) to start afresh"
    if "epochs" in changed and new["epochs"] > old["epochs"]:
        hint += "; to train this run longer on purpose, add --extend (its learning-rate schedule then stretches to the new length)"
    raise UserError(f"workdir {workdir} holds a run with other settings, which resuming would change: {shown}; {hint}")


def _restore_or_init(config: Config, workdir: str, mesh, total_steps: int, extend: bool):
    """(checkpoints, config, state, resumed step or None): the newest readable checkpoint, else fresh weights.

    Unreadable checkpoints newer than the one resumed are named and moved to <workdir>/unreadable_checkpoints/.
    """
    checkpoints = checkpoint.Checkpoints(workdir, keep=config.keep_checkpoints)
    unreadable = []
    for step in reversed(checkpoints.all_steps()):
        try:
            saved = checkpoints.restore_config(step)
            _check_resumable(saved, config, workdir, extend)
            resumed = dataclasses.replace(config, preprocessing=saved.preprocessing)  # as it was trained
            task = make_task(resumed, total_steps)
            shapes = jax.eval_shape(lambda: init_state(task, init_params(resumed)))  # shapes only, no compute
            state = checkpoints.restore_state(step, checkpoint.abstract(shapes, sharding.replicated(mesh)))
        except checkpoint.UnreadableCheckpoint as error:
            print(f"warning: {error}", file=sys.stderr)
            unreadable.append(step)
            continue
        if unreadable:
            if distributed.is_main():
                for bad in unreadable:
                    print(f"moved unreadable step {bad} to {checkpoints.set_aside(bad)}", file=sys.stderr)
                print(f"resuming from step {step}, the newest readable checkpoint", file=sys.stderr)
            distributed.barrier("unreadable checkpoints set aside")
            checkpoints.manager.reload()
        return checkpoints, resumed, state, step
    if unreadable:
        raise UserError(f"no checkpoint in {checkpoints.directory} is readable (steps {', '.join(map(str, unreadable))});"
                        f" move that folder away to start afresh")
    return checkpoints, config, init_state(make_task(config, total_steps), initial_params(config)), None


ETA_AFTER_STEPS = 20  # steps timed for the estimate of the time left
STOP_CHECK_EVERY = 10  # steps between the agreements of several processes on whether one was interrupted


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def describe_run(config: Config, per_epoch: int, total_steps: int, start_step: int) -> str:
    """One line saying what is about to train: recipe, model, input size, steps."""
    batch = f"{config.batch_images} images" if config.batch_images else f"{config.batch_pairs} pairs"
    weights = f"weights {os.path.basename(config.weights)}" if config.weights else "random init"
    resumed = f", resuming at step {start_step}" if start_step else ""
    return (f"recipe {config.recipe}: {config.model} at {config.image_size} px from {weights}, dropout "
            f"{config.spec.dropout:g}, {config.optimizer} {config.backbone_lr:g}/{config.head_lr:g} ({config.schedule}); "
            f"{total_steps} steps = {config.epochs} epoch{'s' if config.epochs > 1 else ''} of {per_epoch} steps of "
            f"{batch}{resumed}")


def _attrs_label(config: Config) -> str:
    return config.attr if len(config.attrs) == 1 else f"{len(config.attrs)} attributes"


def _last_checkpoint(workdir: str) -> int | None:
    if not os.path.isdir(checkpoint.checkpoint_dir(workdir)):
        return None
    checkpoints = checkpoint.Checkpoints(workdir, read_only=True)
    last = checkpoints.latest_step()
    checkpoints.close()
    return last


def _interrupted(workdir: str, by_peer: bool = False) -> Interrupted:
    what = "stopped: another process of this run was interrupted" if by_peer else "interrupted"
    last = _last_checkpoint(workdir)
    if last is None:
        return Interrupted(f"{what} before the first checkpoint; rerun the same command to start again")
    return Interrupted(f"{what}; last checkpoint: step {last}; rerun the same command to resume")


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
        return _prepare_and_train(config, workdir, stop_after_steps, data, extend, started)
    except BaseException:
        if new_workdir and distributed.is_main():
            remove_if_unused(workdir)
        raise


def _prepare_and_train(config: Config, workdir: str, stop_after_steps: int | None, data: RankingData | None,
                       extend: bool, started: float) -> dict:
    with signals.sigterm_as_keyboard_interrupt():
        try:
            data = data or load_dataset_for(config)
            config = dataclasses.replace(config, data_identity=data.identity)
            train_pairs = data.pairs_of("train", config.attrs)
            eval_pairs = dict(test=data.pairs_of("test", config.attrs))
            if config.val_fraction:
                train_pairs, eval_pairs["val"] = hold_out(train_pairs, config.val_fraction, config.seed)
            train_split = data.split_images(train_pairs, augment.train_size(config), "train", in_memory=False)
            eval_splits = {name: data.split_images(pairs, config.image_size, name, in_memory=False)
                           for name, pairs in eval_pairs.items()}
            if _keep_in_memory(config, [train_split, *eval_splits.values()]):
                for name, split in [("train", train_split), *eval_splits.items()]:
                    split.images = split.images.load(f"loading {name} images")
            with exclusive(workdir) if distributed.is_main() else contextlib.nullcontext():
                return _train(config, workdir, train_split, eval_splits, stop_after_steps, started, extend)
        except KeyboardInterrupt:
            raise _interrupted(workdir) from None


def _out_of_memory(error: Exception, config: Config) -> UserError | None:
    """A one-line error for the accelerator (or XLA on the CPU) running out of memory, else None."""
    if "RESOURCE_EXHAUSTED" not in str(error) and "Out of memory" not in str(error):
        return None
    batch = f"--batch_images={config.batch_images}" if config.batch_images else f"--batch_pairs={config.batch_pairs}"
    return UserError(f"out of memory training {config.model} at {config.image_size} px with {batch}: lower it, "
                     f"--image_size, or use --compute_dtype=bfloat16 ({str(error).splitlines()[0][:160]})")


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
    distributed.check_same_config(config)
    mesh = sharding.global_mesh()
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
    per_epoch = input_pipeline.steps_per_epoch(len(train_pairs), config.batch_pairs, config.batch_images)
    total_steps = config.epochs * per_epoch
    checkpoints, config, state, resume_step = _restore_or_init(config, workdir, mesh, total_steps, extend)
    task = make_task(config, total_steps)
    state = sharding.put_replicated(state, mesh)
    if distributed.is_main():
        write_atomic(os.path.join(workdir, "config.json"), dumps(config))

    start_step = int(state.step)
    end_step = total_steps if stop_after_steps is None else min(total_steps, start_step + stop_after_steps)
    score_fn = jit_apply(task.network, mesh)

    def evaluate_params(params) -> tuple[dict, dict]:
        """({val_accuracy (if held out), test_accuracy: means over attributes; <split>_accuracy_per_attr},
        {split: its images' scores})."""
        row, scores_of = {}, {}
        for name in sorted(eval_splits, reverse=True):  # val first: it selects the best checkpoint
            split = eval_splits[name]
            scores_of[name] = apply_in_batches(lambda x: score_fn(params, sharding.put_images(x, mesh)), split.images,
                                               config.eval_batch_images, desc=f"scoring {name}",
                                               multiple=mesh.size)
            per_attr = accuracy_per_attribute(scores_of[name], split.pairs)
            evaluated = [a for a in per_attr.values() if math.isfinite(a)]  # an all-ties attribute has no accuracy
            row[f"{name}_accuracy"] = float(np.mean(evaluated)) if evaluated else math.nan
            if len(per_attr) > 1:
                row[f"{name}_accuracy_per_attr"] = per_attr
        return row, scores_of

    plans = input_pipeline.BatchPlans(train_pairs, len(train_split.ids), config.batch_pairs, config.seed,
                                      config.batch_images)
    rows = sharding.process_rows(plans.images_per_batch, mesh)  # this process's share of each batch's images
    if isinstance(train_split.images, StoredImages):
        local_batches = streaming.streaming_batches(plans, train_split.images, start_step, end_step, rows,
                                                    config.data_workers or streaming.default_workers())
    else:
        local_batches = input_pipeline.table_batches(plans, train_split.images, start_step, end_step, rows)
    batches = input_pipeline.prefetch(sharding.put_batch(b, mesh) for b in local_batches)
    compile_start = time.perf_counter()
    first_batch = next(batches, None)
    try:
        step_fn = jit_train_step(task, mesh).lower(state, first_batch).compile() if first_batch is not None else None
    except Exception as error:
        raise _out_of_memory(error, config) or error
    compile_seconds = time.perf_counter() - compile_start

    summary = dict(
        dataset=config.dataset, attr=config.attr, workdir=workdir, compile_seconds=round(compile_seconds, 2),
        steps_per_epoch=per_epoch, total_steps=total_steps, resumed_from_step=resume_step,
        input_pipeline="streaming" if isinstance(train_split.images, StoredImages) else "memory",
    )
    def last_checkpoint() -> str:
        last = checkpoints.latest_step()
        return f"step {last} in {checkpoints.directory}" if last is not None else "none"

    monitor = LearningMonitor(config.attrs, total_steps, per_epoch, round(config.warmup_fraction * total_steps))

    def report(findings: list) -> None:
        """Say at once what the monitor found, on stderr and in metrics.jsonl."""
        for finding in findings:
            log.write(step=finding.step, learning=finding.kind, message=finding.message())
            if distributed.is_main():
                bar.write(f"warning: {finding.message()}", file=sys.stderr)

    log = MetricsLog(os.path.join(workdir, "metrics.jsonl"), per_epoch, last_checkpoint,
                     on_interval=lambda metrics: report(monitor.steps(metrics)))
    log.truncate_after(start_step)
    val_pairs = sum(int(np.sum(p.target != 0.5)) for p in eval_splits["val"].pairs.values()) if "val" in eval_splits else 0
    evaluation, evaluated_step = None, None

    def evaluate(step: int) -> dict:
        row, scores_of = evaluate_params(state.params)
        val = (row["val_accuracy"], val_pairs) if "val_accuracy" in row else None
        report(monitor.evaluation(step, scores_of, val))
        return row

    if distributed.is_main():
        print(describe_run(config, per_epoch, total_steps, start_step), file=sys.stderr)
    bar = tqdm(total=end_step, initial=start_step, desc=f"{config.dataset}/{_attrs_label(config)}", unit="step",
               disable=not distributed.is_main())

    def flush() -> None:
        row = log.flush()
        if row:
            bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.0f}")

    # Several processes stop together: a signal to any of them is only noted, and every STOP_CHECK_EVERY steps
    # they agree (a collective) whether one was signalled; then all save the same step and stop.
    together = jax.process_count() > 1
    stop_requested: list[int] = []

    def stop_on(received: list[int]) -> None:
        """Act on signals held back: stop now (one process), or note them for the next agreement (several)."""
        if received and together:
            stop_requested.extend(received)
        elif received:
            raise KeyboardInterrupt

    def save(step: int, metrics: dict | None = None) -> None:
        flush()
        with signals.deferred() as received:  # never half-started
            checkpoints.save(step, state, config, metrics)
        stop_on(received)

    all_batches = itertools.chain([first_batch], batches) if first_batch is not None else iter(())
    loop_start = time.perf_counter()
    try:
        with signals.deferred(stop_requested) if together else contextlib.nullcontext():
            for step, batch in enumerate(all_batches, start=start_step + 1):
                with signals.deferred() as received:  # the step donates its input state: never stop half-way
                    state, metrics = step_fn(state, batch)
                stop_on(received)
                log.add(step, metrics, images=len(batch["images"]))
                bar.update(1)
                if step == start_step + ETA_AFTER_STEPS and distributed.is_main():
                    jax.block_until_ready(metrics)  # steps run asynchronously: time them done
                    seconds = (time.perf_counter() - loop_start) / ETA_AFTER_STEPS * (end_step - step)
                    bar.write(f"about {_duration(seconds)} of training left ({end_step - step} steps)", file=sys.stderr)
                evaluate_now = step % (per_epoch * config.eval_every_epochs) == 0 or step == total_steps
                if step % config.log_every_steps == 0 or evaluate_now:
                    flush()
                if evaluate_now:
                    evaluation, evaluated_step = evaluate(step), step
                    log.write(step=step, epoch=round(step / per_epoch, 4),
                              seconds=round(time.perf_counter() - started, 1), **evaluation)
                    shown = ", ".join(f"{name.replace('_', ' ')} {value:.2f}%" for name, value in evaluation.items()
                                      if name.endswith("_accuracy"))
                    if distributed.is_main():
                        bar.write(f"epoch {step / per_epoch:g}: {shown}")
                    save(step, {name: v for name, v in evaluation.items() if name in checkpoint.SELECTION_METRICS})
                elif step % config.checkpoint_every_steps == 0 or step == end_step or monitor.collapsed:
                    save(step)
                if together and step % STOP_CHECK_EVERY == 0 and distributed.any_process(bool(stop_requested)):
                    raise KeyboardInterrupt
                if monitor.collapsed:
                    break
    except KeyboardInterrupt:
        with signals.deferred():  # a second Ctrl-C must not cut the checkpoint short
            if int(state.step) != checkpoints.latest_step():
                save(int(state.step))
            checkpoints.wait()
        raise _interrupted(workdir, by_peer=together and not stop_requested) from None
    except input_pipeline.InputFault as fault:
        with signals.deferred():  # the state is intact: keep the steps since the last checkpoint
            if not together and int(state.step) != checkpoints.latest_step():
                save(int(state.step))
            checkpoints.wait()
        last = _last_checkpoint(workdir)
        raise UserError(f"reading the training batches failed after step {int(state.step)} ({fault}); "
                        f"{'no checkpoint yet' if last is None else f'last checkpoint: step {last}'}; "
                        f"rerun the same command to resume") from None
    except BaseException as error:
        with signals.deferred():
            checkpoints.wait()
        oom = _out_of_memory(error, config) if isinstance(error, Exception) else None
        if oom:
            raise oom from None
        raise
    finally:
        bar.close()
        if hasattr(local_batches, "close"):  # grain's workers and their shared memory, before the interpreter exits
            local_batches.close()

    with signals.deferred() as received:  # the final checkpoint and the summary are written whatever arrives
        checkpoints.wait()
        best = checkpoints.best_step()
        checkpoints.close()
        final_step = int(state.step)
        if evaluated_step != final_step and (end_step == total_steps or monitor.collapsed) and not received:
            evaluation = evaluate(final_step)
        verdict = monitor.verdict()
        summary.update(dict(test_accuracy=None), **(evaluation or {}))
        summary.update(final_step=final_step, best_step=best, wall_seconds=round(time.perf_counter() - started, 1),
                       learned=verdict is None, did_not_learn=verdict.to_json() if verdict else None,
                       learning_findings=[f.to_json() for f in monitor.findings], **streaming.peak_memory_mib())
        if distributed.is_main() and os.path.exists(log.path):
            title = f"{config.dataset} / {_attrs_label(config)}"
            summary["curves"] = plot_curves(log.path, os.path.join(workdir, "curves.png"), title)
        if distributed.is_main():
            write_atomic(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2))
    if received:
        raise _interrupted(workdir)
    return summary
