"""Training one rule from every seed's initial model: compile once, then timed epochs."""

import dataclasses
import math
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from .._metrics import add_totals, metric_names, primary_metric
from .._rules import BPTT, AbstractLearningRule
from .._rules._base import check_batch, check_rule_mask
from ..distributed._mesh import replicate, shard_batch
from ._progress import Progress
from ._registry import Rule
from ._seedwise import Evaluation, batch_totals, seed_metrics, similarity, snapshot
from ._steps import (
    backward_steps_per_batch,
    compiled_step,
    init_states,
    make_step,
    stack,
    unstack,
    updates_per_batch,
)


@dataclasses.dataclass
class SeedRun:
    """One rule trained from one seed's initial model."""

    seed: int
    history: dict[str, list]
    final: dict[str, float]
    model: object
    trajectory: np.ndarray | None
    similarity_steps: list[int]
    similarity_curves: dict[str, list[float]]
    initial_similarity: object | None


@dataclasses.dataclass
class RuleRun:
    """One rule over all seeds, with what it cost. `peak_memory_bytes` is XLA's estimate
    for one device: with the seeds spread over `devices` devices, each device's share."""

    name: str
    driver: str
    description: str
    lr: float
    vmapped: bool
    updates_per_batch: int
    batches: int
    updates: int
    forward_steps: int
    backward_steps: int
    compile_time_s: float
    time_per_epoch_s: float
    train_time_s: float
    peak_memory_bytes: int | None
    seeds: list[SeedRun]
    devices: int = 1


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long each rule trains and what is recorded."""

    batch_size: int
    batches_per_epoch: int
    similarity_every: int
    trajectory_every: int
    progress: bool
    record: bool = True
    mesh: object = None  # a 1-D jax.sharding.Mesh the vmapped seeds are spread over


def _similarity_rule(spec: Rule):
    rule = spec.rule
    if isinstance(rule, AbstractLearningRule) and not isinstance(rule, BPTT):
        return rule
    return None


class _Recorder:
    """Gradient similarity to BPTT every `plan.similarity_every` batches and parameter
    snapshots every `plan.trajectory_every` batches, for every seed at once."""

    def __init__(self, spec, loss, plan, vmapped, n, masked=False):
        # gradient_similarity runs whole sequences: with padded batches it is not recorded
        rule = _similarity_rule(spec) if plan.record and not masked else None
        self.similar = None if rule is None else similarity(rule, loss, vmapped)
        self.snap = snapshot(vmapped) if plan.record else None
        self.plan, self.n = plan, n
        self.steps, self.comparisons, self.trajectory = [], [], []

    def initial(self, models, xs, ys):
        if self.similar is None:
            return [None] * self.n
        stacked = self.similar(models, xs, ys)
        return [unstack(stacked, s) for s in range(self.n)]

    def __call__(self, done, models, xs, ys):
        if self.snap is not None and done % self.plan.trajectory_every == 0:
            self.trajectory.append(np.asarray(self.snap(models)))
        if self.similar is not None and done % self.plan.similarity_every == 0:
            comparison = self.similar(models, xs, ys)
            self.layers = comparison.layer_names
            self.steps.append(done)
            self.comparisons.append(np.asarray(comparison.layer_cosine))

    def finish(self, models):
        if self.snap is not None:
            self.trajectory.append(np.asarray(self.snap(models)))

    def seed(self, s):
        trajectory = np.stack([t[s] for t in self.trajectory]) if self.trajectory else None
        curves = {}
        if self.comparisons:
            cosines = np.stack([c[s] for c in self.comparisons])
            curves = {name: cosines[:, k].tolist() for k, name in enumerate(self.layers)}
        return trajectory, list(self.steps) if curves else [], curves


def _compile(spec, step, initial, source, size, vmapped, place):
    """The step compiled once (all seeds at once when `vmapped`) and the start state."""
    n = len(initial)
    head = source.head(size)
    if vmapped:
        models = place(stack(initial))
        states = place(init_states(step, models, True))
        xs0, ys0, mask0 = place(_seed_stack(head, n))
        compiled, seconds, memory = compiled_step(step, models, states, xs0, ys0, True, mask0)
    else:
        models = list(initial)
        states = [step.init(m) for m in models]
        compiled, seconds, memory = compiled_step(
            step, models[0], states[0], *head[:2], False, head[2]
        )
    return models, states, compiled, seconds, memory


def _seed_stack(arrays, n: int):
    """`arrays` repeated along a new leading seed axis (a `None` stays `None`)."""
    return tuple(None if a is None else jnp.stack([a] * n) for a in arrays)


def _train_batch(compiled, models, states, xs, ys, mask, vmapped, n):
    if vmapped:
        models, states, outputs, values = compiled(models, states, xs, ys, mask)
        return models, states, outputs, np.asarray(values)
    outputs, values = [], []
    for s in range(n):
        m = None if mask is None else mask[s]
        models[s], states[s], out, value = compiled(models[s], states[s], xs[s], ys[s], m)
        outputs.append(out)
        values.append(float(value))
    return models, states, jnp.stack(outputs), np.asarray(values)


def _placement(mesh):
    """Where the seeds' arrays go: with a mesh, the leading seed axis split over it and
    the arrays every seed shares replicated on it; without, left where they are."""
    if mesh is None:
        return (lambda tree: tree), (lambda tree: tree)
    return (lambda tree: shard_batch(tree, mesh)), (lambda tree: replicate(tree, mesh))


def check_rule(spec, model, source, loss, size: int):
    """`spec`'s training step for `model`, with every check a rule makes of the model and
    the data done now (shapes, labels, graphs the rule cannot handle), without training.
    `source`: the data as `eqslax.compare` reads it (`_source.py`)."""
    step = make_step(spec, model, loss)
    xs, ys, mask = source.head(size)
    check_batch(model, loss, xs, ys, spec.name)
    rule = spec.rule if hasattr(spec.rule, "update") else None
    check_rule_mask(rule, loss, mask, xs, spec.name)
    step.check(xs)
    eqx.filter_eval_shape(step.init, model)
    return step


def train_rule(spec, initial, keys, seeds, source, loss, batches, plan, vmap) -> RuleRun:
    """Train `spec` from each of the `initial` models (one per seed) for `batches` batches
    of `source` (the data as `_source.py` reads it)."""
    n, size, per_epoch = len(initial), plan.batch_size, plan.batches_per_epoch
    steps = source.steps
    step = check_rule(spec, initial[0], source, loss, size)
    check_test = lambda xs, ys: check_batch(initial[0], loss, xs, ys, spec.name)  # noqa: E731
    vmapped = bool(vmap and spec.vmap_seeds and n > 1)
    mesh = plan.mesh if vmapped else None
    place, shared = _placement(mesh)
    evaluation = Evaluation(loss, vmapped, place=shared)
    next(source.test_chunks(evaluation.chunk, check_test), None)  # checked before any work
    models, states, compiled, compile_s, memory = _compile(
        spec, step, initial, source, size, vmapped, place
    )
    measure = batch_totals(loss)
    metrics, ranked = metric_names(loss), f"test_{primary_metric(loss)}"
    recorder = _Recorder(spec, loss, plan, vmapped, n, source.masked)
    first = place(_seed_stack(source.head(size), n))
    initial_similarity = recorder.initial(models, *first[:2])
    histories = [{k: [] for k in columns(loss)} for _ in range(n)]
    epoch_times, total, done, epochs = [], 0.0, 0, math.ceil(batches / per_epoch)
    bar = Progress(plan.progress, spec.name, seeds, epochs, per_epoch)
    for epoch in range(epochs):
        in_epoch = min(per_epoch, batches - done)
        losses, totals = [], None
        elapsed = 0.0
        for batch, batch_arrays in enumerate(source.epoch(keys, epoch, size, in_epoch)):
            xs, ys, mask = place(batch_arrays)
            recorder(done, models, xs, ys)
            start = time.perf_counter()
            models, states, outputs, values = _train_batch(
                compiled, models, states, xs, ys, mask, vmapped, n
            )
            elapsed += time.perf_counter() - start
            losses.append(values)
            totals = add_totals(totals, measure(outputs, ys, mask))
            done += 1
            bar.batch(epoch, batch + 1, float(np.mean(values)))
        if in_epoch == per_epoch or not epoch_times:
            epoch_times.append(elapsed)
        total += elapsed
        tests = evaluation(models, source.test_chunks(evaluation.chunk, check_test), n)
        for s in range(n):
            train = seed_metrics(loss, totals, s)
            row = {
                "epoch": epoch + 1,
                "step": done,
                "updates": done * updates_per_batch(spec, steps),
                "train_loss": float(np.mean([v[s] for v in losses])),
                **{f"train_{m}": train[m] for m in metrics},
                "test_loss": tests[s]["loss"],
                **{f"test_{m}": tests[s][m] for m in metrics},
                "epoch_time": elapsed,
            }
            for column, value in row.items():
                histories[s][column].append(value)
        bar.epoch(epoch, elapsed, [h[ranked][-1] for h in histories])
    recorder.finish(models)
    if mesh is not None:  # the trained models as ordinary one-device models
        device = jax.local_devices()[0]
        models = jtu.tree_map(lambda x: jax.device_put(x, device) if eqx.is_array(x) else x, models)
    runs = []
    for s in range(n):
        trajectory, similarity_steps, curves = recorder.seed(s)
        runs.append(
            SeedRun(
                seed=seeds[s],
                history=histories[s],
                final={k: histories[s][k][-1] for k in finals(loss)},
                model=unstack(models, s) if vmapped else models[s],
                trajectory=trajectory,
                similarity_steps=similarity_steps,
                similarity_curves=curves,
                initial_similarity=initial_similarity[s],
            )
        )
    upb = updates_per_batch(spec, steps)
    return RuleRun(
        name=spec.name,
        driver=spec.driver,
        description=spec.description,
        lr=float(spec.lr),
        vmapped=vmapped,
        updates_per_batch=upb,
        batches=batches,
        updates=batches * upb,
        forward_steps=batches * steps,
        backward_steps=batches * backward_steps_per_batch(spec, steps),
        compile_time_s=compile_s,
        time_per_epoch_s=statistics.median(epoch_times),
        train_time_s=total,
        peak_memory_bytes=memory,
        seeds=runs,
        devices=1 if mesh is None else mesh.size,
    )


def finals(loss) -> tuple[str, ...]:
    """The final numbers of a seed: losses and `loss`'s task metrics, train and test."""
    return tuple(
        f"{split}_{name}" for split in ("train", "test") for name in ("loss", *metric_names(loss))
    )


def columns(loss) -> tuple[str, ...]:
    """The per-epoch history columns for `loss`."""
    return ("epoch", "step", "updates", *finals(loss), "epoch_time")
