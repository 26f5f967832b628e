"""Choosing each rule's learning rate on a validation split carved from the training set."""

import dataclasses

import jax

from ._registry import Rule

VALIDATION_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class Split:
    """In-memory arrays with a train and a test (here: validation) split."""

    train_x: jax.Array
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array


def validation_split(data, fraction: float = VALIDATION_FRACTION) -> Split:
    """The first `1 - fraction` of the training set to train on, the rest to validate."""
    n = data.train_x.shape[0]
    cut = n - max(1, int(round(n * fraction)))
    return Split(data.train_x[:cut], data.train_y[:cut], data.train_x[cut:], data.train_y[cut:])


def tune_lr(spec: Rule, model, key, data, loss, batches, plan, grid) -> dict:
    """Train `spec` once per factor in `grid` (times its learning rate) on the training
    part of [`validation_split`][] and keep the learning rate with the best final
    validation accuracy. Returns `{"grid", "validation_accuracy", "chosen"}`."""
    from ._api import _with_lr
    from ._loop import train_rule

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
            split,
            loss,
            max(1, int(batches * scale)),
            small,
            False,
        )
        scores.append(run.seeds[0].final["test_accuracy"])
    best = max(range(len(lrs)), key=lambda i: scores[i])
    return {"grid": lrs, "validation_accuracy": scores, "chosen": lrs[best]}
