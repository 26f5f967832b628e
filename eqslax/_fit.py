"""`fit`: epochs over batched data, evaluation, history, progress and checkpoints."""

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Bool, PRNGKeyArray

from ._checkpoint import Checkpoint, CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from ._finite import any_nonfinite, check_finite, first_nonfinite
from ._losses import AbstractLoss
from ._mask import check_mask, with_mask
from ._metrics import add_totals, finish_metrics, metric_names, metric_totals
from ._neurons import AbstractNeuron
from ._parameters import trainable
from ._preflight import check_int, check_key, check_splits, prepare_output_dir
from ._rules._base import check_batch, check_rule_mask
from .data._loader import AbstractLoader, ArrayLoader, Loaders, batch_parts
from .distributed._mesh import (
    check_divides,
    local,
    place_batch,
    replicate,
    resolve_mesh,
    shard_batch,
    to_host,
)
from .distributed._processes import is_main_process

_ON_NONFINITE = ("raise", "skip", "ignore")
_FORMAT = 1  # version of what fit keeps in a checkpoint's metadata


@eqx.filter_jit
def _scored(model, loss, xs, ys, mask=None):
    """The summed loss of a batch and its metric totals, in one program."""
    from ._metrics import _totals
    from ._simulate import _simulate, initial_state

    def outputs(x):
        return _simulate(model, x, initial_state(model, x[0]), False, "step")[1]

    out = jax.vmap(outputs)(xs)
    losses = jax.vmap(lambda o, c, m: with_mask(loss, o, c, mask=m))(out, ys, mask)
    return jnp.sum(losses), _totals(loss, out, ys, mask)


def evaluate(
    model: AbstractNeuron,
    loss: AbstractLoss,
    xs: Array | AbstractLoader,
    ys: Array | None = None,
    batch_size: int = 256,
    mask: Bool[Array, "batch time"] | None = None,
) -> dict[str, float]:
    """Sample-mean loss and the task metrics of `model` on `(xs, ys)`, in chunks of
    `batch_size`, or on every batch of a loader given as `xs` (with `ys=None`):
    `{"loss", "accuracy"}` for class labels, `{"loss", "mse", "r2"}` for real-valued
    targets (see `eqslax.task_metrics`). A `mask` (or a loader's `(xs, ys, mask)`
    batches) leaves padded steps out of the loss and the metrics."""
    if isinstance(xs, AbstractLoader):
        if ys is not None or mask is not None:
            raise TypeError(
                "evaluate: with a loader as `xs`, `ys` and `mask` must be None (they are in "
                "the batches)."
            )
        return _evaluate(model, loss, xs, "evaluate", checked=False)
    check_int(batch_size, "batch_size", "evaluate")
    ys = check_batch(model, loss, xs, ys, "evaluate")
    mask = check_rule_mask(None, loss, mask, xs, "evaluate")
    loader = ArrayLoader(xs, ys, batch_size, mask=mask)
    return _evaluate(model, loss, loader, "evaluate", checked=True)


def _evaluate(model, loss, loader: AbstractLoader, owner: str, checked: bool, mesh=None) -> dict:
    total_loss, totals, count = 0.0, None, 0
    for index, batch in enumerate(loader.batches(None, drop_last=False)):
        x, y, m = batch_parts(batch, owner, f"test batch {index}")
        if not checked:
            x, y, m = _checked_batch(model, loss, x, y, owner, f"test batch {index}", m)
        if mesh is not None:
            x, y, m = place_batch((x, y, m), mesh)
        summed, parts = _scored(model, loss, x, y, m)
        total_loss += float(to_host(summed))
        totals = add_totals(totals, {k: to_host(v).astype(np.float64) for k, v in parts.items()})
        count += x.shape[0]
    if count == 0:
        raise ValueError(f"{owner}: the evaluation set holds no samples.")
    return {"loss": total_loss / count, **finish_metrics(loss, totals)}


def _checked_batch(model, loss, xs, ys, owner: str, where: str, mask=None):
    """A batch from a user's loader: shapes, labels, mask and finiteness, named by
    position."""
    ys = check_batch(model, loss, xs, ys, owner, (f"xs ({where})", f"ys ({where})"))
    if mask is not None:
        mask = check_mask(mask, xs.shape[:2], owner, f"mask ({where})")
    check_finite(xs, f"xs ({where})", owner)
    return xs, ys, mask


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


class _Run:
    """Where training stands: the model and state, the position (`epoch`, and
    `batch`, the index of the next batch within it), the history of finished epochs and
    the running sums of the current one. All of it goes into one checkpoint."""

    def __init__(self, model, state, key, batch_size, train_size, columns, mesh=None):
        self.model, self.state, self.key, self.mesh = model, state, key, mesh
        self.batch_size, self.train_size = batch_size, train_size
        self.done, self.epoch, self.batch = 0, 0, 0
        self.columns = columns
        self.history: dict[str, list] = {k: [] for k in columns}
        self.sums = _empty_sums()
        self.epoch_start = time.perf_counter()

    def metadata(self) -> dict:
        totals = self.sums["totals"]
        totals = None if totals is None else {k: v.tolist() for k, v in totals.items()}
        sums = dict(self.sums, totals=totals, seconds=time.perf_counter() - self.epoch_start)
        fields = ("batch_size", "train_size", "done", "epoch", "batch", "history")
        return {"fit": {"version": _FORMAT, "sums": sums, **{f: getattr(self, f) for f in fields}}}

    def like(self) -> Checkpoint:
        return Checkpoint(self.model, self.state, jnp.asarray(0, jnp.int32), self.key)

    def save(self, directory: str | None) -> None:
        if directory is None or not is_main_process():
            return
        step = jnp.asarray(self.done, jnp.int32)
        checkpoint = Checkpoint(self.model, self.state, step, self.key, self.metadata())
        save_checkpoint(os.path.join(directory, "checkpoint.eqx"), checkpoint)
        # A readable copy; resumption reads the history from the checkpoint only.
        atomic_write(os.path.join(directory, "history.json"), json.dumps(self.history).encode())

    def restore(self, path: str, epochs: int) -> None:
        loaded = load_checkpoint(path, self.like())
        meta = loaded.metadata.get("fit")
        if not isinstance(meta, dict) or meta.get("version") != _FORMAT:
            raise CheckpointError(
                f"fit: {path!r} is an eqslax checkpoint but was not written by fit (it has no "
                f"fit position or history), so training cannot resume from it."
            )
        for name, ours in (("batch_size", self.batch_size), ("train_size", self.train_size)):
            if meta[name] != ours:
                label = "the number of training samples" if name == "train_size" else name
                raise ValueError(
                    f"fit: cannot resume from {path!r}: it was written with {label} = "
                    f"{meta[name]}, this call has {ours}. Resume with the same {label}, or "
                    f"use a new `checkpoint_dir`."
                )
        if not np.array_equal(_key_data(loaded.key), _key_data(self.key)):
            raise ValueError(
                f"fit: cannot resume from {path!r}: it was written with a different `key`."
            )
        if meta["epoch"] > epochs:
            raise ValueError(
                f"fit: cannot resume from {path!r} with epochs = {epochs}: it has already "
                f"finished {meta['epoch']} epochs."
            )
        self.model, self.state = loaded.model, loaded.state
        self.done, self.epoch, self.batch = meta["done"], meta["epoch"], meta["batch"]
        if sorted(meta["history"]) != sorted(self.columns):
            raise ValueError(
                f"fit: cannot resume from {path!r}: its history has the columns "
                f"{sorted(meta['history'])}, this loss reports {sorted(self.columns)}."
            )
        self.history = {k: list(meta["history"][k]) for k in self.columns}
        self.sums = {k: meta["sums"][k] for k in _empty_sums()}
        totals = self.sums["totals"]
        if totals is not None:
            self.sums["totals"] = {k: np.asarray(v, np.float64) for k, v in totals.items()}
        self.epoch_start = time.perf_counter() - meta["sums"]["seconds"]


def _empty_sums() -> dict:
    return {"train_loss": 0.0, "totals": None, "batches": 0, "nonfinite_steps": 0}


def _key_data(key):
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


_params_nonfinite = eqx.filter_jit(lambda model: any_nonfinite(trainable(model)))


def _is_nonfinite(model, state) -> bool:
    flag = getattr(state, "nonfinite", None)  # steps not built by eqslax may lack it
    return bool(_params_nonfinite(model) if flag is None else flag)


def _nonfinite_error(run: _Run, model, per_epoch: int) -> FloatingPointError:
    path = first_nonfinite(trainable(model))
    where = f"first in parameter `{path}`" if path else "in a gradient (parameters stayed finite)"
    return FloatingPointError(
        f"fit: non-finite values (NaN or inf) at epoch {run.epoch + 1}, step {run.done + 1} "
        f"(batch {run.batch + 1} of {per_epoch}), {where}. Training stopped before this "
        f"update; the last checkpoint (if any) predates it. Typical causes: a learning rate "
        f"too large, overflow in low precision, a degenerate surrogate. Pass "
        f"on_nonfinite='skip' to drop such updates."
    )


def _train_batch(run, step, source, batch, on_step, on_nonfinite, per_epoch) -> float:
    where = f"epoch {run.epoch + 1}, batch {run.batch}"
    xs, ys, mask = batch_parts(batch, "fit", where)
    if not source.checked:
        xs, ys, mask = _checked_batch(run.model, step.loss, xs, ys, "fit", where, mask)
    if run.mesh is not None:
        xs, ys, mask = shard_batch((xs, ys, mask), run.mesh)
    if on_step is not None:
        on_step(run.done, run.model, xs, ys)
    model, state, outputs, loss = with_mask(step, run.model, run.state, xs, ys, mask=mask)
    if run.mesh is not None:  # keep the invariant whatever the partitioner chose
        model, state = replicate((model, state), run.mesh)
    loss = to_host(loss)
    bad = on_nonfinite != "ignore" and _is_nonfinite(model, state)
    if bad and on_nonfinite == "raise":
        raise _nonfinite_error(run, model, per_epoch)
    if bad:
        run.sums["nonfinite_steps"] += 1
    else:
        run.model, run.state = model, state
        run.sums["train_loss"] += float(loss)
        totals = metric_totals(step.loss, outputs, ys, mask)
        run.sums["totals"] = add_totals(run.sums["totals"], totals)
        run.sums["batches"] += 1
    run.done += 1
    run.batch += 1
    return float(loss)


def _finish_epoch(run: _Run, step, source) -> dict:
    test = _evaluate(run.model, step.loss, source.test, "fit", source.checked, run.mesh)
    count = run.sums["batches"]
    train = {
        "loss": run.sums["train_loss"] / count if count else math.nan,
        **finish_metrics(step.loss, run.sums["totals"]),
    }
    row = {"epoch": run.epoch + 1, "step": run.done}
    row.update({f"train_{k}": v for k, v in train.items()})
    row.update({f"test_{k}": v for k, v in test.items()})
    row["epoch_time"] = time.perf_counter() - run.epoch_start
    row["nonfinite_steps"] = run.sums["nonfinite_steps"]
    for name, value in row.items():
        run.history[name].append(value)
    run.epoch, run.batch, run.sums = run.epoch + 1, 0, _empty_sums()
    run.epoch_start = time.perf_counter()
    return row


def fit(
    model: AbstractNeuron,
    step: Callable,
    data,
    *,
    epochs: int,
    batch_size: int | None = None,
    key: PRNGKeyArray,
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    on_step: Callable | None = None,
    on_nonfinite: str = "raise",
    mesh: Mesh | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> tuple[AbstractNeuron, dict[str, list]]:
    """Train `model` for `epochs` over `data` with a training `step`.

    **Arguments:**

    - `step`: from `eqslax.train_offline` or `eqslax.train_online`.
    - `data`: anything with `train_x (batch, time, in)`, `train_y`, `test_x`,
      `test_y` (e.g. `eqslax.data.randman`), or `eqslax.data.Loaders(train, test)`.
      Each epoch visits the training set in a fresh order drawn from
      `fold_in(key, epoch)`; the last partial batch is dropped. Arrays are checked once
      for NaN and infinity before training; a loader's batches as they arrive.
      Arrays give the same model as an `ArrayLoader` over them with the same key.
      A loader whose batches are `(xs, ys, mask)` (padded sequences, e.g.
      `ArrayLoader(xs, ys, batch_size, mask=mask)`) passes each batch's mask to the step
      and to the metrics.
    - `batch_size`: samples per update (default 32) for arrays; a loader has its own
      (a different `batch_size` here is an error).
    - `checkpoint_dir`, `checkpoint_every`: write `checkpoint.eqx` there every that
      many steps and at the end: one atomic, checksummed file with the model, training
      state, step, key, the history and the running sums of the current epoch (and a
      readable copy of the history in `history.json`). The folder is created and
      probed for writability before training. `resume=True` continues from it; the
      model and the history are bit-identical to an uninterrupted run (except the
      measured `epoch_time`). Resuming refuses a different `batch_size`, number of
      training samples, `key`, or model / optimiser structure.
    - `max_steps`: stop after that many steps in total (to test resumption).
    - `on_step(step, model, xs, ys)`: called before every update with the step number,
      the current model and the batch (to record trajectories or gradient similarity).
    - `on_nonfinite`: what to do when an update makes a gradient or a trainable
      parameter NaN or infinite (the step's `state.nonfinite`). `"raise"` (default):
      stop with a `FloatingPointError` naming the epoch, the step and the first such
      parameter, before the update is kept or checkpointed. `"skip"`: drop that update
      (model and training state stay as before it) and count it. `"ignore"`: keep it.
    - `mesh`, `devices`: data-parallel training over several devices: a 1-D
      `jax.sharding.Mesh` (`eqslax.distributed.data_mesh()`), or the devices to build
      one over. Each batch is split along its batch axis over the devices, the model,
      optimiser and rule state are replicated, and XLA reduces the gradients, so the
      model equals single-device training up to the order of floating-point sums. The
      batch size must be a multiple of the number of devices. With several processes
      (`eqslax.distributed.initialize`) every process runs the same `fit` on the same
      data and key, and only process 0 writes checkpoints (so `checkpoint_dir` must
      be a folder every process reads). A checkpoint resumes on any number of devices.
      The model returned is an ordinary one-device model.

    **Returns:** `(model, history)`; `history` maps `epoch`, `step`,
    `train_loss`, `train_accuracy`, `test_loss`, `test_accuracy`, `epoch_time`
    (seconds) and `nonfinite_steps` (updates met with NaN or infinity) to one value per
    finished epoch. With real-valued targets (a loss with `targets.kind == "value"`)
    `train_mse`, `train_r2`, `test_mse` and `test_r2` replace the accuracies.
    Train loss and metrics average the epoch's kept updates.
    """
    source = _Source(data, batch_size)
    n = _check_fit(
        model,
        step,
        source,
        epochs=epochs,
        key=key,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        max_steps=max_steps,
        on_nonfinite=on_nonfinite,
        mesh=resolve_mesh(mesh, devices, "fit"),
    )
    mesh = source.mesh
    if checkpoint_dir is not None and is_main_process():
        prepare_output_dir(checkpoint_dir, "checkpoint_dir", "fit")
    per_epoch = len(source.train)
    names = metric_names(step.loss)
    size = source.train.batch_size
    run = _Run(model, step.init(model), key, size, n, _columns(names), mesh)
    path = os.path.join(checkpoint_dir, "checkpoint.eqx") if checkpoint_dir else None
    if resume and os.path.exists(path):
        run.restore(path, epochs)
    if mesh is not None:
        run.model, run.state = replicate((run.model, run.state), mesh)
    bar = _Progress(progress and is_main_process(), per_epoch)
    stopped = lambda: max_steps is not None and run.done >= max_steps  # noqa: E731
    while run.epoch < epochs and not stopped():
        # The rest of the epoch from the next batch on: a loader that prefetches prepares
        # them on its thread; closing the iterator (on stopping) ends that thread.
        batches = source.train.batches(source.epoch_key(run.key, run.epoch), run.batch)
        with _closing(batches):
            for batch in batches:
                loss = _train_batch(run, step, source, batch, on_step, on_nonfinite, per_epoch)
                bar.update(run.epoch, epochs, run.batch, loss)
                finished = run.batch == per_epoch
                if finished:  # the row goes into any checkpoint written at this step
                    bar.epoch(run.epoch, epochs, _finish_epoch(run, step, source), names)
                if checkpoint_every and run.done % checkpoint_every == 0:
                    run.save(checkpoint_dir)
                if finished or stopped():
                    break
    run.save(checkpoint_dir)
    return local(run.model), run.history


@contextlib.contextmanager
def _closing(batches):
    """Close `batches` at the end (a generator, a prefetching iterator), if it can be."""
    try:
        yield
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


class _Source:
    """Where `fit`'s batches come from: loaders, made from arrays when given arrays
    (`checked`: the arrays were checked whole, before training)."""

    def __init__(self, data, batch_size):
        self.data = data
        if isinstance(data, Loaders):
            self.train, self.test, self.checked = data.train, data.test, False
            if batch_size is not None and batch_size != data.train.batch_size:
                raise ValueError(
                    f"fit: `batch_size` = {batch_size!r} but the training loader has "
                    f"batch_size {data.train.batch_size}; leave `batch_size` out with loaders."
                )
            return
        self.checked = True
        self.batch_size = 32 if batch_size is None else batch_size
        self.train = self.test = None

    def epoch_key(self, key, epoch: int):
        """`fold_in(key, epoch)`, made once per epoch."""
        if getattr(self, "_epoch", None) != epoch:
            self._epoch, self._key = epoch, jax.random.fold_in(key, epoch)
        return self._key

    def make_loaders(self) -> None:
        if self.train is None:
            data = self.data
            self.train = ArrayLoader(data.train_x, data.train_y, self.batch_size)
            self.test = ArrayLoader(data.test_x, data.test_y, 256)


def _check_fit(model, step, source, **options) -> int:
    """Every argument of `fit`, before any work; returns the training-set size."""
    if not isinstance(model, AbstractNeuron):
        raise TypeError(
            f"fit: `model` must be an eqslax neuron or Connect, got {type(model).__name__}."
        )
    if not (
        callable(step)
        and hasattr(step, "init")
        and isinstance(getattr(step, "loss", None), AbstractLoss)
    ):
        raise TypeError(
            f"fit: `step` must be a training step from train_offline, train_online or "
            f"train_fptt, got {type(step).__name__}."
        )
    if source.checked:
        n = check_splits(model, step.loss, source.data, "fit")
        batch_size = check_int(source.batch_size, "batch_size", "fit")
    else:
        n, batch_size = source.train.n_samples, source.train.batch_size
    check_int(options["epochs"], "epochs", "fit")
    if batch_size > n:
        raise ValueError(
            f"fit: `batch_size` must be in 1..{n} (training samples), got {batch_size}."
        )
    source.mesh = options["mesh"]
    if source.mesh is not None:
        name = "`batch_size`" if source.checked else "the training loader's `batch_size`"
        check_divides(batch_size, source.mesh, name, "fit")
    check_key(options["key"], "key", "fit")
    every, directory = options["checkpoint_every"], options["checkpoint_dir"]
    if every is not None:
        check_int(every, "checkpoint_every", "fit")
    if options["max_steps"] is not None:
        check_int(options["max_steps"], "max_steps", "fit", minimum=0)
    if every is not None and directory is None:
        raise ValueError("fit: `checkpoint_every` needs a `checkpoint_dir`.")
    if options["resume"] and directory is None:
        raise ValueError("fit: `resume=True` needs a `checkpoint_dir` to resume from.")
    if options["on_nonfinite"] not in _ON_NONFINITE:
        raise ValueError(
            f"fit: `on_nonfinite` must be one of {', '.join(map(repr, _ON_NONFINITE))}, got "
            f"{options['on_nonfinite']!r}."
        )
    if source.checked:
        check_finite(source.data.train_x, "data.train_x", "fit")
        check_finite(source.data.test_x, "data.test_x", "fit")
        source.make_loaders()
    return n


_SHORT = {"accuracy": "acc"}


def _columns(names: tuple[str, ...]) -> tuple[str, ...]:
    """History columns: `train_<metric>`/`test_<metric>` for each task metric."""
    train = tuple(f"train_{m}" for m in ("loss", *names))
    test = tuple(f"test_{m}" for m in ("loss", *names))
    return ("epoch", "step", *train, *test, "epoch_time", "nonfinite_steps")
