"""`fit`: epochs over batched data, evaluation, history, progress and checkpoints."""

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
from ._losses import AbstractLoss
from ._metrics import add_totals, finish_metrics, metric_names, metric_totals
from ._neurons import AbstractNeuron
from ._rules._base import check_batch


@eqx.filter_jit
def _outputs(model, xs):
    from ._simulate import _simulate, initial_state

    return jax.vmap(lambda x: _simulate(model, x, initial_state(model, x[0]), False, "step")[1])(xs)


def evaluate(
    model: AbstractNeuron, loss: AbstractLoss, xs: Array, ys: Array, batch_size: int = 256
) -> dict[str, float]:
    """Sample-mean loss and the task metrics of `model` on `(xs, ys)`, in chunks:
    `{"loss", "accuracy"}` for class labels, `{"loss", "mse", "r2"}` for real-valued
    targets (see `eqslax.task_metrics`)."""
    ys = check_batch(model, loss, xs, ys, "evaluate")
    total_loss, totals = 0.0, None
    for start in range(0, xs.shape[0], batch_size):
        x, y = xs[start : start + batch_size], ys[start : start + batch_size]
        out = _outputs(model, x)
        total_loss += float(jnp.sum(jax.vmap(lambda o, c: loss(o, c))(out, y)))
        totals = add_totals(totals, metric_totals(loss, out, y))
    return {"loss": total_loss / xs.shape[0], **finish_metrics(loss, totals)}


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

    def epoch(self, epoch, epochs, row, names):
        if self.enabled:
            end = "\r" if self.live else ""

            def part(split):
                metrics = "  ".join(f"{_SHORT.get(m, m)} {row[f'{split}_{m}']:.3f}" for m in names)
                return f"{split} loss {row[f'{split}_loss']:.4f}  {metrics}"

            sys.stderr.write(
                f"{end}epoch {epoch + 1}/{epochs}  {part('train')}  {part('test')}  "
                f"({row['epoch_time']:.1f} s)\n"
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
    """Train `model` for `epochs` over `data` with a training `step`.

    **Arguments:**

    - `step`: from `eqslax.train_offline` or `eqslax.train_online`.
    - `data`: anything with `train_x (batch, time, in)`, `train_y`, `test_x`,
      `test_y` (e.g. `eqslax.data.randman`). Each epoch visits the training set in
      a fresh order drawn from `fold_in(key, epoch)`; the last partial batch is dropped.
    - `checkpoint_dir`, `checkpoint_every`: write `checkpoint.eqx` (model, training
      state, step, key) and `history.json` there every that many steps and at the end,
      atomically. `resume=True` continues from it; the result is bit-identical to an
      uninterrupted run.
    - `max_steps`: stop after that many steps in total (to test resumption).
    - `on_step(step, model, xs, ys)`: called before every update with the step number,
      the current model and the batch (to record trajectories or gradient similarity).

    **Returns:** `(model, history)`; `history` maps `epoch`, `step`,
    `train_loss`, `train_accuracy`, `test_loss`, `test_accuracy` and
    `epoch_time` (seconds) to one value per finished epoch. With real-valued targets
    (a loss with `targets.kind == "value"`) `train_mse`, `train_r2`, `test_mse`
    and `test_r2` replace the accuracies.
    """
    check_data(model, step.loss, data, "fit")
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
    names = metric_names(step.loss)
    history: dict[str, list] = {k: [] for k in _columns(names)}
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
        start, losses, totals = time.perf_counter(), [], None
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
            totals = add_totals(totals, metric_totals(step.loss, outputs, ys))
            done += 1
            bar.update(epoch, epochs, batch + 1, losses[-1])
            if checkpoint_every and done % checkpoint_every == 0:
                save()
        test = evaluate(model, step.loss, data.test_x, data.test_y)
        train = {"loss": _mean(losses), **finish_metrics(step.loss, totals)}
        row = {"epoch": epoch + 1, "step": done}
        row.update({f"train_{k}": v for k, v in train.items()})
        row.update({f"test_{k}": v for k, v in test.items()})
        row["epoch_time"] = time.perf_counter() - start
        for name, value in row.items():
            history[name].append(value)
        bar.epoch(epoch, epochs, row, names)
    save()
    return model, history


_SHORT = {"accuracy": "acc"}


def _columns(names: tuple[str, ...]) -> tuple[str, ...]:
    """History columns: `train_<metric>`/`test_<metric>` for each task metric."""
    train = tuple(f"train_{m}" for m in ("loss", *names))
    test = tuple(f"test_{m}" for m in ("loss", *names))
    return ("epoch", "step", *train, *test, "epoch_time")


def check_data(model, loss, data, owner: str) -> None:
    """`data`'s training and test splits hold batches `loss` can score, before any work."""
    for split in ("train", "test"):
        x_name, y_name = f"data.{split}_x", f"data.{split}_y"
        if not (hasattr(data, f"{split}_x") and hasattr(data, f"{split}_y")):
            raise TypeError(
                f"{owner}: `data` must have train_x, train_y, test_x and test_y, got "
                f"{type(data).__name__} without `{x_name}` or `{y_name}`."
            )
        xs, ys = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        check_batch(model, loss, xs, ys, owner, (x_name, y_name))


def _mean(values):
    return sum(values) / len(values) if values else math.nan
