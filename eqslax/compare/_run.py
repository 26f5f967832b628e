"""The built-in Randman experiment of the command line, and what the report derives from
a finished comparison (loss landscape, a recorded sample)."""

import dataclasses

import jax
import numpy as np

from .. import analysis
from .._losses import PerStep
from .._rules._bptt import sequence_loss
from .._zoo import feedforward
from ._api import CompareResult, compare
from ._registry import rule
from ._source import test_head


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """What `eqslax compare` runs without a TOML file: Randman, a
    `units-hidden-classes` network (LIF hidden layer, leaky-integrator readout), the
    per-step loss (`eqslax.PerStep`), Adam with `lr` for offline rules and
    `online_lr` for online ones. Seed `seed + i` initialises seed `i`'s model."""

    rules: tuple[str, ...] = ("bptt", "ostl", "ottt", "otpe", "eprop")
    encoding: str = "time"
    p: float = 0.5
    classes: int = 10
    units: int = 20
    steps: int = 50
    samples: int = 100
    hidden: int = 64
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-2
    online_lr: float = 2e-3
    seed: int = 0
    seeds: int = 3
    budget: str = "epochs"
    updates: int | None = None
    tune_lr: bool = False
    similarity_every: int = 10
    trajectory_every: int = 10
    grid: int = 15


TUNE_GRID = (0.3, 1.0, 3.0)


def config_rules(config: CompareConfig):
    """The configured rules with the offline/online learning rates applied."""
    out = []
    for name in config.rules:
        spec = rule(name)
        lr = config.online_lr if spec.driver == "online" else config.lr
        if spec.driver in ("online", "offline", "deferred", "fptt") and name != "stdp":
            spec = rule(name, lr=lr)
        out.append(spec)
    return out


def run_comparison(config: CompareConfig, *, progress: bool = True) -> CompareResult:
    """Train each rule of `config` on Randman and gather every number the report uses."""
    from ..data import randman

    specs = config_rules(config)  # unknown names fail here, before any work
    data = randman(
        jax.random.fold_in(jax.random.key(config.seed), 0),
        n_classes=config.classes,
        n_units=config.units,
        n_steps=config.steps,
        samples_per_class=config.samples,
        encoding=config.encoding,
        p=config.p,
    )

    def model(key):
        return feedforward((config.units, config.hidden, config.classes), key=key, readout="li")

    description = (
        f"Randman, encoding `{config.encoding}`, {config.classes} classes, {config.units} "
        f"units, {config.steps} steps, {config.samples} samples per class; network "
        f"{config.units}-{config.hidden}-{config.classes} (LIF hidden layer, leaky-integrator "
        f"readout), per-step cross-entropy."
    )
    return compare(
        model,
        specs,
        data,
        PerStep(),
        seeds=tuple(range(config.seed, config.seed + config.seeds)),
        epochs=config.epochs,
        batch_size=config.batch_size,
        budget=config.budget,
        updates=config.updates,
        tune_lr_grid=TUNE_GRID if config.tune_lr else None,
        similarity_every=config.similarity_every,
        trajectory_every=config.trajectory_every,
        progress=progress,
        description=description,
    )


def landscape_of(results: CompareResult, grid: int = 15, eval_size: int = 128) -> dict:
    """The loss surface in the PCA plane of the first seed's trajectories of every rule,
    around the first rule's final model (Li et al. 2018), on a fixed evaluation batch."""
    names = results.rules
    reference = results.runs[names[0]].seeds[0].model
    pca = analysis.trajectory_pca(
        [results.runs[name].seeds[0].trajectory for name in names],
        analysis.flatten_params(reference),
        model=reference,
    )
    alphas, betas = analysis.trajectory_grid(pca.coordinates, num=grid, margin=1.2)
    xs, ys = test_head(results.data, eval_size)

    def loss_of_model(model):
        return sequence_loss(model, results.loss, xs, ys)[0]

    surface = analysis.loss_surface(
        loss_of_model, reference, *pca.directions, alphas, betas, chunk_size=grid
    )
    return {
        "alphas": alphas,
        "betas": betas,
        "surface": surface,
        "coordinates": dict(zip(names, pca.coordinates)),
        "explained_variance": np.asarray(pca.explained_variance_ratio),
    }


def recording_of(results: CompareResult):
    """One test sample through the first rule's first trained model, every layer recorded."""
    from .._simulate import record

    model = results.runs[results.rules[0]].seeds[0].model
    sample = test_head(results.data, 1)[0][0]
    _, rec = record(model, sample)
    return sample, rec, model
