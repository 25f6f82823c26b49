"""Whether a run is learning, decided while it trains: a run that has not learned must never look like one that has.

Three failures are watched for:
  collapsed: every image gets the same score, for every attribute: over the evaluated images at an
    evaluation, or over every training batch of a whole epoch after the warmup. The rank loss is
    then ln 2 exactly (every pair predicted 50/50) and no gradient reaches the network again.
  stuck: the rank loss stays well above ln 2 (worse than predicting 50/50 for every pair) for two
    epochs, and at least a quarter of the run, after the warmup: a learning rate far too high.
    (A randomly initialised ranking layer starts above ln 2; a run that learns gets below it sooner.)
  at chance: after the first third of the run, the training pairs (over the last epoch's batches)
    or the validation pairs are ordered no better than a coin would order them. The run goes on,
    and ends as not learned if that is still so at its end.
The first two stop the run. A loss near ln 2 alone is not taken for a collapse: with many ties
(whose loss cannot go below ln 2) and dropout, runs that learn slowly stay near it for epochs.
Test pairs never take part in the decision.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

LN2 = math.log(2.0)
STUCK_MARGIN = 0.05  # a rank loss above ln 2 + this in every logged interval of the window is stuck
STUCK_EPOCHS, STUCK_RUN_FRACTION = 2, 0.25  # ... the window: this many epochs, and at least this fraction of the run
SPREAD_TOLERANCE = 1e-5  # std of the scores over images, relative to 1 + their mean magnitude
CHANCE_MARGIN = 5.0  # accuracy (%) must clear 50 by this much, or by 2 standard errors if more
MIN_PAIRS_TO_JUDGE = 200  # fewer ordered pairs than this say nothing about chance

FRESH = "start afresh in another --workdir"
ADVICE = {  # kind -> (what happened, its usual causes and what to try)
    "collapsed": ("the network collapsed", "usual causes: a peak learning rate too high for few pairs per step (the "
                  "units after the convolutions stop firing for good, and then every image scores the same), heavy "
                  "dropout, many 'about the same' pairs pulling scores together. Try --recipe=scratch (its settings "
                  "follow how densely the pairs cover the images), lower --backbone_lr and --head_lr or --dropout, "
                  f"or --weights=FILE (ImageNet weights); {FRESH}"),
    "stuck": ("the network is stuck", f"usual cause: a learning rate far too high. Try lower --backbone_lr and "
              f"--head_lr, or --recipe=scratch; {FRESH}"),
    "at_chance": ("the network is not learning", "usual causes: a learning rate too low, or too few steps, to learn "
                  "from random init; labels that do not follow the images. Try --recipe=scratch, more --epochs, or "
                  "--weights=FILE (ImageNet weights)"),
}


@dataclasses.dataclass(frozen=True)
class Finding:
    """Something the monitor saw: `kind` 'collapsed', 'stuck' or 'at_chance', at `step`, and what was seen."""

    kind: str
    step: int
    seen: str

    def message(self) -> str:
        what, advice = ADVICE[self.kind]
        return f"{what} at step {self.step}: {self.seen}; {advice}"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def described(failure: dict) -> str:
    """'collapsed at step 290': a finding as summary.json stores it (`Finding.to_json`), in a few words."""
    return f"{failure['kind'].replace('_', ' ')} at step {failure['step']}"


def at_chance(accuracy: float, pairs: int) -> bool:
    """Whether `accuracy` (%) over `pairs` ordered pairs is no clear evidence of more than a coin's 50%.

    False when there are too few pairs to tell.
    """
    if pairs < MIN_PAIRS_TO_JUDGE or not math.isfinite(accuracy):
        return False
    return accuracy < 50.0 + max(CHANCE_MARGIN, 2 * 50.0 / math.sqrt(pairs))


def constant_attributes(scores: np.ndarray, attrs: tuple[str, ...]) -> list[str]:
    """The attributes whose scores [images, attributes] do not vary across the images (as train_step.spread
    measures a training batch's)."""
    scores = np.asarray(scores, np.float64).reshape(len(scores), -1)
    spread = scores.std(axis=0) / (1.0 + np.abs(scores).mean(axis=0))
    return [attr for attr, s in zip(attrs, spread) if not s > SPREAD_TOLERANCE]


class LearningMonitor:
    """Fed the step metrics and the evaluations of a run; returns what it finds as it finds it.

    `warmup_steps`: the flat-loss rule only counts epochs that start after them.
    """

    def __init__(self, attrs: tuple[str, ...], total_steps: int, steps_per_epoch: int, warmup_steps: int):
        self.attrs, self.total_steps, self.per_epoch = attrs, total_steps, steps_per_epoch
        self.warmup_steps = warmup_steps
        self.constant_since: int | None = None  # first step of the current run of constant-score training batches
        self.stuck_since: int | None = None  # first step of the current run of intervals with loss > ln 2 + margin
        self.epoch_counts: list[tuple[int, float, float]] = []  # (step, correct, counted) of recent steps
        self.findings: list[Finding] = []
        self.chance_now: Finding | None = None

    @property
    def collapsed(self) -> Finding | None:
        """The finding that stopped the run ('collapsed' or 'stuck'), if any."""
        return next((f for f in self.findings if f.kind != "at_chance"), None)

    def verdict(self) -> Finding | None:
        """Why the run did not learn (collapsed, stuck, or still at chance at its last check), or None if it learned."""
        return self.collapsed or self.chance_now

    def _found(self, finding: Finding) -> list[Finding]:
        self.findings.append(finding)
        return [finding]

    def steps(self, metrics: list[tuple[int, dict]]) -> list[Finding]:
        """One logging interval of (step, metrics) with rank_loss, score_spread, pairs_correct and pairs_counted."""
        if not metrics or self.collapsed:
            return []
        first, last = metrics[0][0], metrics[-1][0]
        for step, m in metrics:
            self.epoch_counts.append((step, m["pairs_correct"], m["pairs_counted"]))
        self.epoch_counts = [c for c in self.epoch_counts if c[0] > last - self.per_epoch]
        after_warmup = max(first, self.warmup_steps + 1)
        constant = all(m["score_spread"] <= SPREAD_TOLERANCE for _, m in metrics)
        self.constant_since = (self.constant_since or after_warmup) if constant else None
        rank_loss = float(np.mean([m["rank_loss"] for _, m in metrics]))
        self.stuck_since = (self.stuck_since or after_warmup) if rank_loss > LN2 + STUCK_MARGIN else None
        if self.constant_since and last - self.constant_since + 1 >= self.per_epoch:
            return self._found(Finding("collapsed", last, f"every training image has got the same score since step "
                                       f"{self.constant_since} (for all {len(self.attrs)} attribute(s)); the rank loss "
                                       f"is ln 2 = {LN2:.4f}, every pair predicted 50/50"))
        window = max(STUCK_EPOCHS * self.per_epoch, math.ceil(STUCK_RUN_FRACTION * self.total_steps))
        if self.stuck_since and last - self.stuck_since + 1 >= window:
            return self._found(Finding("stuck", last, f"the rank loss has stayed above ln 2 + {STUCK_MARGIN} = "
                                       f"{LN2 + STUCK_MARGIN:.3f} (worse than predicting 50/50 for every pair; "
                                       f"{rank_loss:.3f} lately) since step {self.stuck_since}"))
        return []

    def training_accuracy(self) -> tuple[float, int]:
        """(accuracy %, ordered pairs) of the training batches of the last epoch (dropout and augmentation on)."""
        correct = sum(c[1] for c in self.epoch_counts)
        counted = sum(c[2] for c in self.epoch_counts)
        return (100.0 * correct / counted if counted else float("nan")), int(round(counted))

    def evaluation(self, step: int, scores: dict[str, np.ndarray], val: tuple[float, int] | None = None) -> list[Finding]:
        """An evaluation at `step`: the scores of each evaluated split's images [images, attributes], and the
        validation (accuracy %, ordered pairs) if there is a validation split."""
        found = []
        constant = {name: constant_attributes(s, self.attrs) for name, s in scores.items()}
        if not self.collapsed and constant and all(len(c) == len(self.attrs) for c in constant.values()):
            found += self._found(Finding("collapsed", step, f"every image gets the same score ({', '.join(constant)}"
                                         f" images, all {len(self.attrs)} attribute(s))"))
        if step * 3 < self.total_steps:
            return found
        accuracy, pairs = self.training_accuracy()
        checks = [("training-pair", accuracy, pairs)] + ([("validation", *val)] if val else [])
        chance = [f"{name} accuracy {acc:.2f}% over {n} pairs" for name, acc, n in checks if at_chance(acc, n)]
        if not chance:
            self.chance_now = None
            return found
        self.chance_now = Finding("at_chance", step, f"{' and '.join(chance)}, no better than chance, "
                                  f"{100 * step / self.total_steps:.0f}% into the run")
        if not any(f.kind == "at_chance" for f in self.findings):
            found += self._found(self.chance_now)
        return found
