"""Training every rule from the same initial model, and measuring what differs."""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import analysis
from .._fit import fit
from .._losses import PerStep
from .._rules import BPTT
from .._rules._bptt import sequence_loss
from .._train import train_offline
from .._train_online import train_online
from .._zoo import feedforward
from ._registry import make_rule


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """What ``eqslax compare`` runs. Every rule trains the same initial model on the same
    data with the same per-step loss (:class:`eqslax.PerStep` on a leaky-integrator
    readout) and the same optimiser; online rules update at every time step."""

    rules: tuple[str, ...] = ("bptt", "rtrl", "ostl", "eprop")
    encoding: str = "time"
    p: float = 0.5
    classes: int = 10
    units: int = 20
    steps: int = 50
    samples: int = 100
    hidden: int = 32
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-2
    online_lr: float = 2e-3
    seed: int = 0
    similarity_every: int = 10
    trajectory_every: int = 10
    grid: int = 15


def _memory_estimate(step, model, state, xs, ys) -> int | None:
    """XLA's peak temporary memory for one compiled training step, if it reports one."""
    from .._train import _offline_step
    from .._train_online import OnlineStep, _online_step

    function = _online_step if isinstance(step, OnlineStep) else _offline_step
    try:
        analysis_ = function.lower(step, model, state, xs, ys).compile().compiled.memory_analysis()
        return int(analysis_.temp_size_in_bytes + analysis_.argument_size_in_bytes)
    except Exception:  # not every backend reports memory
        return None


def _train_one(name, model, data, loss, config, key, progress):
    rule, mode = make_rule(name)
    if mode == "online":
        step = train_online(model, rule, loss, optax.adam(config.online_lr))
    else:
        step = train_offline(model, loss, optax.adam(config.lr), rule)
    trajectory, similarity = (
        [],
        analysis.SimilarityRecorder(rule, BPTT(), every=config.similarity_every),
    )

    def on_step(done, current, xs, ys):
        if done % config.trajectory_every == 0:
            trajectory.append(analysis.flatten_params(current))
        if name != "bptt":
            similarity(done, current, loss, xs, ys)

    xs0, ys0 = data.train_x[: config.batch_size], data.train_y[: config.batch_size]
    memory = _memory_estimate(step, model, step.init(model), xs0, ys0)
    if progress:
        print(f"[{name}] training ({mode})", flush=True)
    start = time.perf_counter()
    trained, history = fit(
        model,
        step,
        data,
        epochs=config.epochs,
        batch_size=config.batch_size,
        key=key,
        progress=progress,
        on_step=on_step,
    )
    elapsed = time.perf_counter() - start
    trajectory.append(analysis.flatten_params(trained))
    from ..neurobench import neurobench_metrics

    return {
        "neurobench": neurobench_metrics(trained, data.test_x, data.test_y),
        "mode": mode,
        "model": trained,
        "history": history,
        "train_time_s": elapsed,
        "time_per_epoch_s": float(np.mean(history["epoch_time"])),
        "peak_memory_bytes": memory,
        "trajectory": jnp.stack(trajectory),
        "similarity_steps": similarity.steps,
        "similarity_curves": {k: v.tolist() for k, v in similarity.layer_curves().items()},
    }


def run_comparison(config: CompareConfig, *, progress: bool = True) -> dict:
    """Train each rule of ``config`` and gather every number and array the report uses."""
    from ..data import randman

    for name in config.rules:
        make_rule(name)  # fail on an unknown name before any work
    root = jax.random.key(config.seed)
    data = randman(
        jax.random.fold_in(root, 0),
        n_classes=config.classes,
        n_units=config.units,
        n_steps=config.steps,
        samples_per_class=config.samples,
        encoding=config.encoding,
        p=config.p,
    )
    model = feedforward(
        (config.units, config.hidden, config.classes), key=jax.random.fold_in(root, 1), readout="li"
    )
    loss = PerStep()
    xs, ys = data.train_x[: config.batch_size], data.train_y[: config.batch_size]
    initial = {}
    for name in config.rules:
        if name != "bptt":
            rule, _ = make_rule(name)
            initial[name] = analysis.gradient_similarity(rule, BPTT(), model, loss, xs, ys)
    runs = {
        name: _train_one(name, model, data, loss, config, jax.random.fold_in(root, 2), progress)
        for name in config.rules
    }
    return {
        "config": config,
        "data": data,
        "initial_model": model,
        "loss": loss,
        "initial_similarity": initial,
        "runs": runs,
    }


def landscape_of(results: dict, eval_size: int = 128) -> dict:
    """The loss surface in the PCA plane of all trajectories, around the first rule's
    final model (Li et al. 2018), on a fixed evaluation batch."""
    config, data, loss = results["config"], results["data"], results["loss"]
    runs = results["runs"]
    reference = runs[config.rules[0]]["model"]
    pca = analysis.trajectory_pca(
        [runs[name]["trajectory"] for name in config.rules],
        analysis.flatten_params(reference),
        model=reference,
    )
    alphas, betas = analysis.trajectory_grid(pca.coordinates, num=config.grid, margin=1.2)
    xs, ys = data.test_x[:eval_size], data.test_y[:eval_size]

    def loss_of_model(model):
        return sequence_loss(model, loss, xs, ys)[0]

    surface = analysis.loss_surface(
        loss_of_model, reference, *pca.directions, alphas, betas, chunk_size=config.grid
    )
    return {
        "alphas": alphas,
        "betas": betas,
        "surface": surface,
        "coordinates": dict(zip(config.rules, pca.coordinates)),
        "explained_variance": pca.explained_variance_ratio,
    }


def recording_of(results: dict):
    """One test sample through the first rule's trained model, every layer recorded."""
    from .._simulate import record

    model = results["runs"][results["config"].rules[0]]["model"]
    sample = results["data"].test_x[0]
    _, rec = record(model, sample)
    return sample, rec, model
