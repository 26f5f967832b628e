"""``fit``: epochs over batched data, evaluation, history, progress and checkpoints."""

import json
import math
import os
import sys
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from ._checkpoint import Checkpoint, atomic_write, load_checkpoint, save_checkpoint
from ._losses import AbstractLoss, accuracy
from ._neurons import AbstractNeuron


@eqx.filter_jit
def _outputs(model, xs):
    from ._simulate import _simulate, initial_state

    return jax.vmap(lambda x: _simulate(model, x, initial_state(model, x[0]), False, "step")[1])(xs)


def evaluate(
    model: AbstractNeuron, loss: AbstractLoss, xs: Array, ys: Array, batch_size: int = 256
) -> dict[str, float]:
    """Batch-mean loss and accuracy of ``model`` on ``(xs, ys)``, in chunks."""
    total_loss, correct = 0.0, 0.0
    for start in range(0, xs.shape[0], batch_size):
        x, y = xs[start : start + batch_size], ys[start : start + batch_size]
        out = _outputs(model, x)
        total_loss += float(jnp.sum(jax.vmap(lambda o, c: loss(o, c))(out, y)))
        correct += float(accuracy(loss, out, y)) * x.shape[0]
    return {"loss": total_loss / xs.shape[0], "accuracy": correct / xs.shape[0]}


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total
        self.live = enabled and sys.stderr.isatty()

    def update(self, epoch, epochs, done, loss):
        if self.live:
            width = 24
            filled = int(width * done / self.total)
            sys.stderr.write(
                f"\repoch {epoch + 1}/{epochs} [{'#' * filled}{'.' * (width - filled)}] "
                f"{done}/{self.total} loss {loss:.4f}"
            )
            sys.stderr.flush()

    def epoch(self, epoch, epochs, row):
        if self.enabled:
            end = "\r" if self.live else ""
            sys.stderr.write(
                f"{end}epoch {epoch + 1}/{epochs}  train loss {row['train_loss']:.4f}  "
                f"acc {row['train_accuracy']:.3f}  test loss {row['test_loss']:.4f}  "
                f"acc {row['test_accuracy']:.3f}  ({row['epoch_time']:.1f} s)\n"
            )


def fit(
    model: AbstractNeuron,
    step: Callable,
    data,
    *,
    epochs: int,
    batch_size: int = 32,
    key: PRNGKeyArray,
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    on_step: Callable | None = None,
) -> tuple[AbstractNeuron, dict[str, list]]:
    """Train ``model`` for ``epochs`` over ``data`` with a training ``step``.

    **Arguments:**

    - ``step``: from :func:`eqslax.train_offline` or :func:`eqslax.train_online`.
    - ``data``: anything with ``train_x (batch, time, in)``, ``train_y``, ``test_x``,
      ``test_y`` (e.g. :func:`eqslax.data.randman`). Each epoch visits the training set in
      a fresh order drawn from ``fold_in(key, epoch)``; the last partial batch is dropped.
    - ``checkpoint_dir``, ``checkpoint_every``: write ``checkpoint.eqx`` (model, training
      state, step, key) and ``history.json`` there every that many steps and at the end,
      atomically. ``resume=True`` continues from it; the result is bit-identical to an
      uninterrupted run.
    - ``max_steps``: stop after that many steps in total (to test resumption).
    - ``on_step(step, model, xs, ys)``: called before every update with the step number,
      the current model and the batch (to record trajectories or gradient similarity).

    **Returns:** ``(model, history)``; ``history`` maps ``epoch``, ``step``,
    ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy`` and
    ``epoch_time`` (seconds) to one value per finished epoch.
    """
    n = data.train_x.shape[0]
    if batch_size <= 0 or batch_size > n:
        raise ValueError(
            f"fit: `batch_size` must be in 1..{n} (training samples), got {batch_size}."
        )
    if epochs <= 0:
        raise ValueError(f"fit: `epochs` must be positive, got {epochs}.")
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("fit: `checkpoint_every` needs a `checkpoint_dir`.")
    per_epoch = n // batch_size
    state = step.init(model)
    history: dict[str, list] = {k: [] for k in _COLUMNS}
    done = 0
    ckpt_path = os.path.join(checkpoint_dir, "checkpoint.eqx") if checkpoint_dir else None
    if resume and ckpt_path and os.path.exists(ckpt_path):
        loaded = load_checkpoint(ckpt_path, Checkpoint(model, state, jnp.asarray(0), key))
        model, state, key, done = loaded.model, loaded.state, loaded.key, int(loaded.step)
        with open(os.path.join(checkpoint_dir, "history.json")) as f:
            history = json.load(f)

    def save():
        if ckpt_path:
            save_checkpoint(ckpt_path, Checkpoint(model, state, jnp.asarray(done), key))
            atomic_write(os.path.join(checkpoint_dir, "history.json"), json.dumps(history).encode())

    bar = _Progress(progress, per_epoch)
    for epoch in range(done // per_epoch, epochs):
        order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        start, losses, correct = time.perf_counter(), [], []
        for batch in range(done % per_epoch, per_epoch):
            if max_steps is not None and done >= max_steps:
                save()
                return model, history
            index = order[batch * batch_size : (batch + 1) * batch_size]
            ys = data.train_y[index]
            if on_step is not None:
                on_step(done, model, data.train_x[index], ys)
            model, state, outputs, loss = step(model, state, data.train_x[index], ys)
            losses.append(float(loss))
            correct.append(float(accuracy(step.loss, outputs, ys)))
            done += 1
            bar.update(epoch, epochs, batch + 1, losses[-1])
            if checkpoint_every and done % checkpoint_every == 0:
                save()
        test = evaluate(model, step.loss, data.test_x, data.test_y)
        row = {
            "epoch": epoch + 1,
            "step": done,
            "train_loss": _mean(losses),
            "train_accuracy": _mean(correct),
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "epoch_time": time.perf_counter() - start,
        }
        for name, value in row.items():
            history[name].append(value)
        bar.epoch(epoch, epochs, row)
    save()
    return model, history


_COLUMNS = (
    "epoch",
    "step",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "epoch_time",
)


def _mean(values):
    return sum(values) / len(values) if values else math.nan
