"""`eqslax.compare(model, rules, data, loss, ...)`: train several rules from the same
initial models on the same data, over several seeds, under an explicit budget."""

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from .._losses import AbstractLoss
from .._metrics import primary_metric
from ..distributed._mesh import check_divides, resolve_mesh
from ._loop import Plan, RuleRun, check_rule, train_rule
from ._registry import Rule, rule
from ._source import source
from ._stats import Interval, mean_ci, paired_difference
from ._steps import updates_per_batch
from ._tune import tune_lr

SCHEMA_VERSION = 3
BUDGETS = ("epochs", "updates")


@dataclasses.dataclass
class CompareResult:
    """Everything `eqslax.compare` measured; the report, plots and `results.json` read it.

    `runs` maps each rule's name to its [`RuleRun`][] (with one `SeedRun` per seed, in
    the order of `seeds`); `initial_models[i]` is seed `seeds[i]`'s initial model, the
    same for every rule.
    """

    runs: dict[str, RuleRun]
    seeds: tuple[int, ...]
    initial_models: list
    data: Any
    loss: AbstractLoss
    budget: str
    epochs: int
    batch_size: int
    metric: str
    shared_init: bool
    tuned_lr: dict[str, dict] = dataclasses.field(default_factory=dict)
    description: str = ""

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(self.runs)

    @property
    def key(self) -> str:
        """The final number rules are ranked by: `"test_accuracy"`, or `"test_r2"` for a
        regression loss."""
        return f"test_{self.metric}"

    def values(self, name: str, key: str | None = None) -> np.ndarray:
        """`key` (default [`key`][eqslax.compare.CompareResult.key]) of each seed's final
        metrics (or a per-rule number) for rule `name`."""
        key = self.key if key is None else key
        run = self.runs[name]
        if key in run.seeds[0].final:
            return np.array([s.final[key] for s in run.seeds])
        return np.array([getattr(run, key)])

    def interval(self, name: str, key: str | None = None) -> Interval:
        """Mean ± 95 % interval over seeds of `key` (default `key`) for rule `name`."""
        return mean_ci(self.values(name, key))

    def difference(self, a: str, b: str, key: str | None = None) -> Interval:
        """`a - b` paired by seed."""
        return paired_difference(self.values(a, key), self.values(b, key))


def _as_rule(item) -> Rule:
    if isinstance(item, Rule):
        return item
    if isinstance(item, str):
        return rule(item)
    raise TypeError(
        f"compare: each of `rules` must be a registry name or an eqslax.compare.Rule, "
        f"got {type(item).__name__}."
    )


def _initial_models(model, seed_keys):
    if isinstance(model, Callable) and not hasattr(model, "init_state"):
        return [model(jax.random.fold_in(k, 1)) for k in seed_keys], False
    return [model for _ in seed_keys], True


def _batches(specs, budget, updates, epochs, per_epoch, steps) -> dict[str, int]:
    if budget == "epochs":
        return {s.name: epochs * per_epoch for s in specs}
    per = {s.name: updates_per_batch(s, steps) for s in specs}
    lcm = math.lcm(*per.values())
    if updates is None:
        updates = lcm * math.ceil(epochs * per_epoch * min(per.values()) / lcm)
    bad = {n: p for n, p in per.items() if updates % p}
    if bad or updates <= 0:
        raise ValueError(
            f"compare: `updates`={updates} must be a positive multiple of every rule's "
            f"updates per batch ({', '.join(f'{n}: {p}' for n, p in per.items())}); "
            f"e.g. {lcm * max(1, updates // lcm)}."
        )
    return {n: updates // p for n, p in per.items()}


def compare(
    model,
    rules: Sequence[str | Rule],
    data,
    loss: AbstractLoss,
    *,
    seeds: int | Sequence[int] = 1,
    epochs: int = 8,
    batch_size: int | None = None,
    budget: str = "epochs",
    updates: int | None = None,
    vmap_seeds: bool = True,
    tune_lr_grid: Sequence[float] | None = None,
    similarity_every: int = 10,
    trajectory_every: int = 10,
    progress: bool = True,
    description: str = "",
    mesh: Mesh | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> CompareResult:
    r"""Train every rule of `rules` from the same initial models on `data` and measure
    what differs.

    **Arguments:**

    - `model`: an eqslax model (anything `eqslax.simulate` accepts), shared by every
      seed, or `key -> model` to initialise each seed differently.
    - `rules`: registry names (`"bptt"`, `"ostl"`, ...) or [`eqslax.compare.Rule`][]s.
    - `data`: arrays `train_x (batch, time, in)`, `train_y`, `test_x`, `test_y` (e.g.
      `eqslax.data.Splits` or `eqslax.data.randman(...)`), or `eqslax.data.Loaders`
      (each seed's epoch drawn from `train.batch(fold_in(key, epoch), i)`, the test split
      read batch by batch; an `ArrayLoader` of the same arrays trains the same models).
    - `loss`: an eqslax loss (online and deferred drivers need a per-step loss). Its
      targets set the task metric rules are ranked by: test accuracy for class labels,
      test $R^2$ (with the MSE beside it) for real-valued targets, e.g.
      `PerStep(optax.l2_loss)`.
    - `seeds`: a count $N$ (seeds $0..N-1$) or the seeds. Seed $s$ draws the initial model
      from `fold_in(key(s), 1)` and its data order from `fold_in(key(s), 2)`; every rule
      sees the same $N$ initial models and orders.
    - `epochs`, `batch_size`: passes over the training set and samples per batch
      (default 32 for arrays, the train loader's own for `Loaders`).
    - `budget`: `"epochs"` (every rule sees `epochs` epochs) or `"updates"` (every rule
      makes `updates` optimiser updates; by default the smallest common multiple of the
      rules' updates per batch at or above what the least-updating rule makes in `epochs`).
    - `vmap_seeds`: train the seeds of a rule as one vmapped program (one compile).
    - `tune_lr_grid`: factors of each rule's learning rate tried on a validation split
      (the last 20 % of the training arrays), one seed, `epochs` epochs; the best final
      validation metric (accuracy, or $R^2$ for a regression loss) wins and is used for
      the real runs.
    - `similarity_every`, `trajectory_every`: every how many batches the gradient
      similarity to BPTT and the parameters are recorded.
    - `mesh`, `devices`: spread the seeds over several devices: a 1-D
      `jax.sharding.Mesh` (`eqslax.distributed.data_mesh()`) or the devices to build one
      over. The vmapped seed axis of models, training states and batches is split over
      the devices, so each device trains `len(seeds) / devices` seeds and the results
      equal a one-device run; the number of seeds must be a multiple of the number of
      devices. `peak_memory_bytes` is then each device's share. Rules that cannot vmap
      their seeds run them one after the other on one device.

    **Returns:** a [`CompareResult`][].
    """
    specs = [_as_rule(r) for r in rules]
    if not specs:
        raise ValueError("compare: `rules` must name at least one rule, got none.")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"compare: rule names must be unique, got {names}.")
    if not isinstance(loss, AbstractLoss):
        raise TypeError(f"compare: `loss` must be an eqslax loss, got {type(loss).__name__}.")
    src = source(data)
    if budget not in BUDGETS:
        raise ValueError(f"compare: `budget` must be one of {BUDGETS}, got {budget!r}.")
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("compare: `seeds` must be at least 1.")
    if not isinstance(epochs, int) or epochs <= 0:
        raise ValueError(f"compare: `epochs` must be a positive int, got {epochs!r}.")
    n, steps = src.n_train, src.steps
    if src.batch_size is not None:
        if batch_size not in (None, src.batch_size):
            raise ValueError(
                f"compare: `batch_size`={batch_size!r} differs from the train loader's "
                f"batch_size {src.batch_size}; leave it out or build the loader with it."
            )
        batch_size = src.batch_size
    batch_size = 32 if batch_size is None else batch_size
    if not isinstance(batch_size, int) or not 0 < batch_size <= n:
        raise ValueError(f"compare: `batch_size` must be in 1..{n}, got {batch_size!r}.")
    if tune_lr_grid and src.arrays is None:
        raise ValueError(
            "compare: `tune_lr_grid` carves a validation split from in-memory training "
            "arrays; with eqslax.data.Loaders, tune on arrays or pass `tune_lr_grid=None`."
        )
    per_epoch = n // batch_size
    batches = _batches(specs, budget, updates, epochs, per_epoch, steps)
    seed_keys = [jax.random.key(s) for s in seeds]
    initial, shared = _initial_models(model, seed_keys)
    order_keys = [jax.random.fold_in(k, 2) for k in seed_keys]
    mesh = resolve_mesh(mesh, devices, "compare")
    if mesh is not None:
        if not vmap_seeds:
            raise ValueError(
                "compare: `mesh`/`devices` spread the vmapped seeds over devices; "
                "they need `vmap_seeds=True`, got vmap_seeds=False."
            )
        check_divides(len(seeds), mesh, "the number of `seeds`", "compare", what="seeds")
    plan = Plan(batch_size, per_epoch, similarity_every, trajectory_every, progress, mesh=mesh)
    for spec in specs:  # every rule's checks before any rule trains
        check_rule(spec, initial[0], src, loss, batch_size)
    tuned = {}
    if tune_lr_grid:
        tuned = {
            s.name: tune_lr(
                s, initial[0], order_keys[0], data, loss, batches[s.name], plan, tune_lr_grid
            )
            for s in specs
        }
        specs = [_with_lr(s, tuned[s.name]["chosen"]) for s in specs]
    runs = {
        s.name: train_rule(
            s, initial, order_keys, seeds, src, loss, batches[s.name], plan, vmap_seeds
        )
        for s in specs
    }
    return CompareResult(
        runs=runs,
        seeds=seeds,
        initial_models=initial,
        data=data,
        loss=loss,
        budget=budget,
        epochs=epochs,
        batch_size=batch_size,
        metric=primary_metric(loss),
        shared_init=shared,
        tuned_lr=tuned,
        description=description,
    )


def _with_lr(spec: Rule, lr: float) -> Rule:
    return Rule(
        name=spec.name,
        rule=spec.rule,
        driver=spec.driver,
        lr=lr,
        optimizer=spec.optimizer,
        description=spec.description,
        vmap_seeds=spec.vmap_seeds,
    )
