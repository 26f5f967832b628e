"""Training one rule from every seed's initial model: compile once, then timed epochs."""

import dataclasses
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import analysis
from .._fit import evaluate
from .._rules import BPTT, AbstractLearningRule
from .._rules._base import check_batch
from ._progress import Progress
from ._registry import Rule
from ._steps import (
    backward_steps_per_batch,
    batch_metric,
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
    trajectory: np.ndarray
    similarity_steps: list[int]
    similarity_curves: dict[str, list[float]]
    initial_similarity: object | None


@dataclasses.dataclass
class RuleRun:
    """One rule over all seeds, with what it cost."""

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


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long each rule trains and what is recorded."""

    batch_size: int
    batches_per_epoch: int
    similarity_every: int
    trajectory_every: int
    progress: bool
    record: bool = True


def _similarity_rule(spec: Rule):
    rule = spec.rule
    if isinstance(rule, AbstractLearningRule) and not isinstance(rule, BPTT):
        return rule
    return None


def _batch(data, orders, batch, size):
    index = jnp.stack([order[batch * size : (batch + 1) * size] for order in orders])
    return data.train_x[index], data.train_y[index]


def _record(spec, models, xs, ys, loss, done, plan, recorders, trajectories, n, vmapped):
    for s in range(n):
        model = unstack(models, s) if vmapped else models[s]
        if plan.record and done % plan.trajectory_every == 0:
            trajectories[s].append(analysis.flatten_params(model))
        if recorders[s] is not None:
            recorders[s](done, model, loss, xs[s], ys[s])


def train_rule(spec, initial, keys, seeds, data, loss, batches, plan, vmap) -> RuleRun:
    """Train `spec` from each of the `initial` models (one per seed) for `batches` batches."""
    n, size, per_epoch = len(initial), plan.batch_size, plan.batches_per_epoch
    steps = data.train_x.shape[1]
    step = make_step(spec, initial[0], loss)
    check_batch(initial[0], loss, data.train_x[:size], data.train_y[:size], spec.name)
    step.check(data.train_x[:size])
    vmapped = bool(vmap and spec.vmap_seeds and n > 1)
    if vmapped:
        models = stack(initial)
        states = init_states(step, models, True)
        xs0, ys0 = _batch(data, [jnp.arange(size)] * n, 0, size)
        compiled, compile_s, memory = compiled_step(step, models, states, xs0, ys0, True)
    else:
        models = list(initial)
        states = [step.init(m) for m in models]
        xs0, ys0 = data.train_x[:size], data.train_y[:size]
        compiled, compile_s, memory = compiled_step(step, models[0], states[0], xs0, ys0, False)
    for model in initial:  # compile evaluation outside the timed epochs too
        evaluate(model, loss, data.test_x[:1], data.test_y[:1])
        break
    similar = _similarity_rule(spec) if plan.record else None
    recorders = [
        analysis.SimilarityRecorder(similar, BPTT(), every=plan.similarity_every)
        if similar is not None
        else None
        for _ in range(n)
    ]
    initial_similarity = [
        analysis.gradient_similarity(
            similar,
            BPTT(),
            m,
            loss,
            xs0[:size] if not vmapped else xs0[0],
            ys0[:size] if not vmapped else ys0[0],
        )
        if similar is not None
        else None
        for m in initial
    ]
    trajectories = [[] for _ in range(n)]
    histories = [{k: [] for k in _COLUMNS} for _ in range(n)]
    epoch_times, total, done, epochs = [], 0.0, 0, math.ceil(batches / per_epoch)
    bar = Progress(plan.progress, spec.name, seeds, epochs, per_epoch)
    for epoch in range(epochs):
        orders = [
            jax.random.permutation(jax.random.fold_in(k, epoch), data.train_x.shape[0])
            for k in keys
        ]
        in_epoch = min(per_epoch, batches - done)
        losses, correct = [[] for _ in range(n)], [[] for _ in range(n)]
        elapsed = 0.0
        for batch in range(in_epoch):
            xs, ys = _batch(data, orders, batch, size)
            _record(spec, models, xs, ys, loss, done, plan, recorders, trajectories, n, vmapped)
            start = time.perf_counter()
            if vmapped:
                models, states, outputs, values = compiled(models, states, xs, ys)
                values = np.asarray(values)
            else:
                outputs, values = [], []
                for s in range(n):
                    models[s], states[s], out, value = compiled(models[s], states[s], xs[s], ys[s])
                    outputs.append(out)
                    values.append(float(value))
            elapsed += time.perf_counter() - start
            for s in range(n):
                losses[s].append(float(values[s]))
                correct[s].append(float(batch_metric(loss, outputs[s], ys[s])))
            done += 1
            bar.batch(epoch, batch + 1, float(np.mean(values)))
        if in_epoch == per_epoch or not epoch_times:
            epoch_times.append(elapsed)
        total += elapsed
        for s in range(n):
            model = unstack(models, s) if vmapped else models[s]
            test = evaluate(model, loss, data.test_x, data.test_y)
            row = {
                "epoch": epoch + 1,
                "step": done,
                "updates": done * updates_per_batch(spec, steps),
                "train_loss": float(np.mean(losses[s])),
                "train_accuracy": float(np.mean(correct[s])),
                "test_loss": test["loss"],
                "test_accuracy": test["accuracy"],
                "epoch_time": elapsed,
            }
            for key, value in row.items():
                histories[s][key].append(value)
        bar.epoch(epoch, elapsed, [h["test_accuracy"][-1] for h in histories])
    runs = []
    for s in range(n):
        model = unstack(models, s) if vmapped else models[s]
        trajectories[s].append(analysis.flatten_params(model))
        recorder = recorders[s]
        runs.append(
            SeedRun(
                seed=seeds[s],
                history=histories[s],
                final={k: histories[s][k][-1] for k in _FINAL},
                model=model,
                trajectory=np.stack([np.asarray(t) for t in trajectories[s]]),
                similarity_steps=list(recorder.steps) if recorder else [],
                similarity_curves={k: v.tolist() for k, v in recorder.layer_curves().items()}
                if recorder and recorder.steps
                else {},
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
    )


_COLUMNS = (
    "epoch",
    "step",
    "updates",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "epoch_time",
)
_FINAL = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
