"""A trained ranker loaded from a workdir: `relrank.load(workdir).score(images)`."""

from __future__ import annotations

import jax
import numpy as np

from relrank import checkpoint, sharding
from relrank.config import Config
from relrank.errors import UserError
from relrank.evaluation import score_all
from relrank.images import to_uint8_rgb
from relrank.train_step import abstract_params, jit_scores, make_task


class Ranker:
    """Scores images by the attribute it was trained on (higher = more)."""

    def __init__(self, config: Config, params, step: int, batch_images: int | None = None):
        self.config = config
        self.step = step
        self.mesh = sharding.make_mesh()
        self.task = make_task(config)
        self.params = sharding.put_replicated(params, self.mesh)
        self._score = jit_scores(self.task, self.mesh)
        batch = batch_images or config.eval_batch_images
        self.batch_images = -(-batch // self.mesh.size) * self.mesh.size

    def prepare(self, images) -> np.ndarray:
        """uint8 [N, S, S, 3] at the model's size from paths, PIL images, arrays, or one such array."""
        size = self.config.image_size
        if isinstance(images, np.ndarray) and images.ndim == 4:
            if images.dtype == np.uint8 and images.shape[1:] == (size, size, 3):
                return images
            images = list(images)
        return np.stack([to_uint8_rgb(x, size) for x in images])

    def score(self, images) -> np.ndarray:
        """One score per image, float32 [N]; batched, preprocessed as in training."""
        prepared = self.prepare(images)
        return score_all(lambda x: self._score(self.params, x), prepared, self.batch_images)

    def compare(self, a, b) -> np.ndarray:
        """P(a shows more of the attribute than b) for matching lists of images."""
        score_a, score_b = self.score(a), self.score(b)
        return np.asarray(jax.nn.sigmoid(score_a - score_b))


def load(workdir: str, which: str = "latest") -> Ranker:
    """The ranker saved in `workdir`: `which` is 'latest', 'best' (best test accuracy) or a step number."""
    checkpoints = checkpoint.open_workdir(workdir)
    try:
        step = resolve_step(checkpoints, which)
        try:
            config, params = _restore(checkpoints, step)
        except checkpoint.UnreadableCheckpoint as error:
            readable = [s for s in checkpoints.all_steps() if s != step and _is_readable(checkpoints, s)]
            hint = (f"readable steps: {', '.join(map(str, readable))} (choose one with --checkpoint=STEP)"
                    if readable else "no other step is readable")
            raise UserError(f"{error}; {hint}") from None
    finally:
        checkpoints.close()
    return Ranker(config, params, step)


def _restore(checkpoints: checkpoint.Checkpoints, step: int):
    config = checkpoints.restore_config(step)
    target = checkpoint.abstract(abstract_params(config), sharding.replicated(sharding.make_mesh()))
    return config, checkpoints.restore_params(step, target)


def _is_readable(checkpoints: checkpoint.Checkpoints, step: int) -> bool:
    try:
        _restore(checkpoints, step)
    except UserError:
        return False
    return True


def resolve_step(checkpoints: checkpoint.Checkpoints, which: str | int) -> int:
    if which == "latest":
        return checkpoints.latest_step()
    if which == "best":
        return checkpoints.best_step()
    steps = checkpoints.all_steps()
    if str(which).isdigit() and int(which) in steps:
        return int(which)
    raise UserError(f"no checkpoint {which!r}; use latest, best or one of the steps {steps}")
