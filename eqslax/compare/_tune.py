"""Choosing each rule's learning rate on a validation split carved from the training set."""

import dataclasses

import numpy as np

from .._metrics import primary_metric
from ..data import Splits
from ._registry import Rule

VALIDATION_FRACTION = 0.2


def validation_split(data, fraction: float = VALIDATION_FRACTION) -> Splits:
    """The first `1 - fraction` of the training set to train on, the rest to validate."""
    n = data.train_x.shape[0]
    cut = n - max(1, int(round(n * fraction)))
    return Splits(data.train_x[:cut], data.train_y[:cut], data.train_x[cut:], data.train_y[cut:])


def tune_lr(spec: Rule, model, key, data, loss, batches, plan, grid) -> dict:
    """Train `spec` once per factor in `grid` (times its learning rate) on the training
    part of [`validation_split`][] and keep the learning rate with the best final
    validation metric (accuracy, or $R^2$ for a regression loss). Returns `{"grid",
    "metric", "validation", "chosen"}`: the learning rates, the metric's name, its
    validation value for each learning rate, and the chosen learning rate."""
    from ._api import _with_lr
    from ._loop import train_rule
    from ._source import ArraySource

    metric = primary_metric(loss)
    split = validation_split(data)
    per_epoch = split.train_x.shape[0] // plan.batch_size
    if per_epoch < 1:
        raise ValueError(
            f"compare: the training part of the validation split ({split.train_x.shape[0]} "
            f"samples) is smaller than `batch_size` = {plan.batch_size}."
        )
    small = dataclasses.replace(plan, batches_per_epoch=per_epoch, progress=False, record=False)
    scale = per_epoch / plan.batches_per_epoch
    lrs = [float(spec.lr * factor) for factor in grid]
    scores = []
    for lr in lrs:
        run = train_rule(
            _with_lr(spec, lr),
            [model],
            [key],
            (0,),
            ArraySource(split),
            loss,
            max(1, int(batches * scale)),
            small,
            False,
        )
        scores.append(run.seeds[0].final[f"test_{metric}"])
    best = max(range(len(lrs)), key=lambda i: -np.inf if np.isnan(scores[i]) else scores[i])
    return {"grid": lrs, "metric": metric, "validation": scores, "chosen": lrs[best]}
