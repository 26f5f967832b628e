"""Experiments from a TOML file: `eqslax compare --config experiment.toml`.

Every table and key is optional except `[[rules]]`; a key the schema does not know, or
a value of the wrong type or range, is an error naming the file and the key, raised
before any work. The schema (defaults shown):

```toml
[experiment]
seeds = 3              # a count N (seeds 0..N-1) or a list of seeds
epochs = 20
batch_size = 32
budget = "epochs"      # or "updates": every rule makes the same number of updates
updates = 2500         # budget = "updates" only (default: see eqslax.compare)
tune_lr = false        # pick each rule's lr from {0.3, 1, 3} x lr on a validation split
grid = 15              # loss-landscape grid points per axis
similarity_every = 10  # batches between gradient comparisons with BPTT
trajectory_every = 10  # batches between parameter snapshots
out = "runs/compare"   # the report's folder (relative to the working directory)
description = ""       # a line for the report

[data]
name = "randman"       # or "npz" or "mackey_glass"
# randman: any keyword of eqslax.data.randman (n_classes = 10, n_units = 20,
# n_steps = 50, samples_per_class = 200, encoding = "time", p, manifold_dim, alpha,
# test_fraction, rate_mode, ...) and seed = 0 (the data key)
# npz: path = "data.npz" (relative to the TOML file) holding train_x (batch, time, in),
# train_y, test_x, test_y: integer labels, or real targets (batch, time, out)
# mackey_glass: per-step forecasting of eqslax.neurobench.mackey_glass_series;
# n_points = 1200, tau = 17.0, and any keyword of eqslax.data.forecasting_windows
# (window = 40, stride = 4, horizon = 1, test_fraction = 0.2, standardize = true)

[network]              # Linear -> neuron for each consecutive pair of sizes
hidden = [64]          # hidden layer sizes; input and output sizes come from the data
neuron = "lif"         # "lif", "if", "alif", "cubalif"
neuron_options = {}    # keyword arguments of the neuron class (decay = 0.9, ...)
readout = "li"         # "li" (membrane) or a neuron name (spikes)
weight_scale = 3.0     # multiplies Equinox's default Linear initialisation
recurrent = false      # true (or one boolean per hidden layer): eqslax.Recurrent(neuron),
                       # W_rec y_{t-1} added to the input (every rule handles it)
cat = {}               # extra edges {target = [sources]}, eqslax.Connect numbering:
                       # layer 2j is the j-th Linear, 2j + 1 its neurons;
                       # {"1" = [1]} is a recurrent edge on the first hidden layer
                       # (exact rules only: BPTT, RTRL, FPTT, truncated BPTT)

[loss]
name = "per_step"      # eqslax.PerStep(), or "accumulated": eqslax.Accumulated(reduce),
                       # or "mse": eqslax.PerStep(optax.l2_loss) for real targets,
                       # ranked by test R^2
reduce = "mean"        # accumulated only: "sum", "mean" or "max"

[[rules]]              # one table per rule, at least one
name = "bptt"          # a registry name (eqslax.compare.RULES), user rules included
label = "bptt"         # the name in the report (default: name)
driver = "offline"     # default: the registry's ("offline", "online", "deferred", "fptt")
lr = 1e-2              # default: the registry's
optimizer = "adam"     # an optax optimiser taking the learning rate first
options = {}           # keyword arguments of the rule (e.g. segments = 5 for fptt)
```
"""

import dataclasses
import inspect
import os
from typing import Any

import optax

from ..data import Splits
from ._registry import DRIVERS, RULES, Rule, rule

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "lion", "nadam")
NEURONS = ("lif", "if", "alif", "cubalif")
_INT, _NUM, _STR, _BOOL, _TABLE, _LIST = (
    "an integer",
    "a number",
    "a string",
    "a boolean",
    "a table",
    "a list",
)


class ConfigError(ValueError):
    """A TOML experiment that cannot be run, naming the file and the key."""


@dataclasses.dataclass
class Experiment:
    """A parsed experiment: what `eqslax.compare` is called with, and the report's options."""

    path: str
    model: Any
    rules: list[Rule]
    data: Any
    loss: Any
    options: dict
    out: str
    grid: int
    description: str
    raw: dict


def _kind(value) -> str:
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _INT
    if isinstance(value, float):
        return _NUM
    return {str: _STR, dict: _TABLE, list: _LIST}.get(type(value), type(value).__name__)


class _Reader:
    """Reads one table, checking each key's type; `done()` rejects unknown keys."""

    def __init__(self, path: str, where: str, table):
        self.path, self.where = path, where
        if not isinstance(table, dict):
            self.fail(where, f"must be a table, got {_kind(table)}")
        self.table, self.seen = table, set()

    def fail(self, key: str, message: str):
        raise ConfigError(f"{self.path}: `{key}` {message}.")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kinds: tuple[str, ...], default=None, check=None, hint=""):
        self.seen.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        if _kind(value) not in kinds and not (_NUM in kinds and _kind(value) == _INT):
            self.fail(self.key(name), f"must be {' or '.join(kinds)}, got {value!r}")
        if check is not None and not check(value):
            self.fail(self.key(name), f"must be {hint}, got {value!r}")
        return value

    def positive(self, name: str, default):
        return self.get(name, (_INT,), default, lambda v: v > 0, "a positive integer")

    def choice(self, name: str, choices, default):
        return self.get(name, (_STR,), default, lambda v: v in choices, f"one of {choices}")

    def done(self, extra: tuple[str, ...] = ()) -> None:
        unknown = [k for k in self.table if k not in self.seen and k not in extra]
        if unknown:
            known = ", ".join(sorted(self.seen))
            self.fail(self.key(unknown[0]), f"is not a known key (known here: {known})")


def _data(path: str, table) -> tuple[Any, dict]:
    from ..data import randman

    reader = _Reader(path, "data", table)
    name = reader.choice("name", ("randman", "npz", "mackey_glass"), "randman")
    if name == "npz":
        file = reader.get("path", (_STR,))
        reader.done()
        if file is None:
            reader.fail("data.path", "is required when data.name is 'npz'")
        return _npz(path, file), {"name": name, "path": file}
    if name == "mackey_glass":
        return _mackey_glass(path, reader, table)
    import jax

    seed = reader.get("seed", (_INT,), 0)
    options = _options(reader, table, randman, ("name", "seed"), ("key", "dtype"))
    try:
        data = randman(jax.random.fold_in(jax.random.key(seed), 0), **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: [data]: {error}") from None
    return data, {"name": name, "seed": seed, **options}


def _options(reader, table, function, own: tuple[str, ...], hidden: tuple[str, ...]) -> dict:
    """The keys of `table` other than `own`, each a keyword of `function`."""
    allowed = [p for p in inspect.signature(function).parameters if p not in hidden]
    options = {k: v for k, v in table.items() if k not in own}
    for key in options:
        if key not in allowed:
            reader.fail(
                f"data.{key}",
                f"is not an option of {function.__name__} (options: {', '.join(allowed)})",
            )
    return options


def _mackey_glass(path: str, reader, table) -> tuple[Splits, dict]:
    from ..data import forecasting_windows
    from ..neurobench import mackey_glass_series

    n_points = reader.positive("n_points", 1200)
    tau = reader.get("tau", (_NUM,), 17.0, lambda v: v > 0, "a positive number")
    own = ("name", "n_points", "tau")
    options = _options(reader, table, forecasting_windows, own, ("series", "dtype"))
    try:
        data = forecasting_windows(mackey_glass_series(n_points, tau=tau), **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: [data]: {error}") from None
    return data, {"name": "mackey_glass", "n_points": n_points, "tau": tau, **options}


def _npz(path: str, file: str) -> Splits:
    import jax.numpy as jnp
    import numpy as np

    full = os.path.join(os.path.dirname(os.path.abspath(path)), file)
    if not os.path.isfile(full):
        raise ConfigError(f"{path}: `data.path`: no file {full!r}.")
    with np.load(full) as arrays:
        missing = [k for k in ("train_x", "train_y", "test_x", "test_y") if k not in arrays]
        if missing:
            raise ConfigError(f"{path}: `data.path`: {file!r} lacks {', '.join(missing)}.")
        return Splits(*(jnp.asarray(arrays[k]) for k in ("train_x", "train_y", "test_x", "test_y")))


def _network(path: str, table, n_in: int, n_out: int):
    reader = _Reader(path, "network", table)
    hidden = reader.get(
        "hidden",
        (_LIST,),
        [64],
        lambda v: all(_kind(h) == _INT and h > 0 for h in v),
        "a list of positive integers",
    )
    neuron = reader.choice("neuron", NEURONS, "lif")
    options = reader.get("neuron_options", (_TABLE,), {})
    readout = reader.choice("readout", ("li",) + NEURONS, "li")
    scale = reader.get("weight_scale", (_NUM,), 3.0, lambda v: v > 0, "positive")
    cat = reader.get("cat", (_TABLE,), {})
    recurrent = reader.get(
        "recurrent",
        (_BOOL, _LIST),
        False,
        lambda v: (
            isinstance(v, bool) or (len(v) == len(hidden) and all(_kind(r) == _BOOL for r in v))
        ),
        f"true, false or one boolean per hidden layer ({len(hidden)})",
    )
    reader.done()
    if isinstance(recurrent, bool):
        recurrent = [recurrent] * len(hidden)
    sizes = [n_in, *hidden, n_out]
    edges = {}
    for target, sources in cat.items():
        key = f"network.cat.{target}"
        if not target.isdigit() or not 0 <= int(target) < 2 * (len(sizes) - 1):
            reader.fail(key, f"must name a layer 0..{2 * (len(sizes) - 1) - 1}")
        if _kind(sources) != _LIST or not all(_kind(s) == _INT for s in sources):
            reader.fail(key, f"must be a list of layer numbers, got {sources!r}")
        edges[int(target)] = list(sources)
    spec = {
        "sizes": sizes,
        "neuron": neuron,
        "neuron_options": options,
        "readout": readout,
        "weight_scale": scale,
        "recurrent": recurrent,
        "cat": edges,
    }
    model = NetworkSpec(path, **spec)
    model.build(_probe_key())  # bad options fail here, before any work
    return model, spec


def _probe_key():
    import jax

    return jax.random.key(0)


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """`key -> eqslax.Connect`: the `[network]` table of a TOML experiment."""

    path: str
    sizes: list
    neuron: str
    neuron_options: dict
    readout: str
    weight_scale: float
    recurrent: list
    cat: dict

    def build(self, key):
        import equinox as eqx
        import jax

        from .._connect import Connect
        from .._neurons import LI, Recurrent
        from .._zoo import _NEURONS

        keys = jax.random.split(key, 2 * len(self.sizes))
        layers = []
        for index, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            linear = eqx.nn.Linear(n_in, n_out, key=keys[index])
            layers.append(
                eqx.tree_at(lambda m: m.weight, linear, self.weight_scale * linear.weight)
            )
            last = index == len(self.sizes) - 2
            kind = self.readout if last else self.neuron
            options = {} if last else self.neuron_options
            try:
                neuron = LI(n_out) if kind == "li" else _NEURONS[kind](n_out, **options)
            except (TypeError, ValueError) as error:
                where = "network.readout" if last else "network.neuron_options"
                raise ConfigError(f"{self.path}: `{where}`: {error}") from None
            if not last and self.recurrent[index]:
                neuron = Recurrent(neuron, key=keys[len(self.sizes) + index])
            layers.append(neuron)
        try:
            return Connect(layers, cat=self.cat or None, key=keys[-1])
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{self.path}: `network.cat`: {error}") from None

    def __call__(self, key):
        return self.build(key)


def _loss(path: str, table):
    from .._losses import Accumulated, PerStep

    reader = _Reader(path, "loss", table)
    name = reader.choice("name", ("per_step", "accumulated", "mse"), "per_step")
    if name in ("per_step", "mse"):
        reader.done()
        return (PerStep() if name == "per_step" else PerStep(optax.l2_loss)), {"name": name}
    reduce = reader.choice("reduce", ("sum", "mean", "max"), "mean")
    reader.done()
    return Accumulated(reduce=reduce), {"name": name, "reduce": reduce}


def _rule(path: str, index: int, table) -> Rule:
    reader = _Reader(path, f"rules[{index}]", table)
    name = reader.choice("name", tuple(sorted(RULES)), None)
    if name is None:
        reader.fail(f"rules[{index}].name", f"is required (one of {', '.join(sorted(RULES))})")
    label = reader.get("label", (_STR,))
    driver = reader.choice("driver", DRIVERS, None)
    lr = reader.get("lr", (_NUM,), None, lambda v: v > 0, "a positive number")
    optimizer = reader.choice("optimizer", OPTIMIZERS, None)
    options = reader.get("options", (_TABLE,), None)
    reader.done()
    try:
        return rule(
            name,
            label=label,
            driver=driver,
            lr=lr,
            options=options,
            optimizer=None if optimizer is None else getattr(optax, optimizer),
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: `rules[{index}]`: {error}") from None


def _experiment(path: str, table) -> dict:
    reader = _Reader(path, "experiment", table)
    seeds = reader.get(
        "seeds",
        (_INT, _LIST),
        3,
        lambda v: v > 0 if isinstance(v, int) else bool(v) and all(_kind(s) == _INT for s in v),
        "a positive count or a non-empty list of integers",
    )
    out = {
        "seeds": seeds,
        "epochs": reader.positive("epochs", 20),
        "batch_size": reader.positive("batch_size", 32),
        "budget": reader.choice("budget", ("epochs", "updates"), "epochs"),
        "updates": reader.positive("updates", None),
        "tune_lr": reader.get("tune_lr", (_BOOL,), False),
        "grid": reader.get("grid", (_INT,), 15, lambda v: v >= 2, "an integer >= 2"),
        "similarity_every": reader.positive("similarity_every", 10),
        "trajectory_every": reader.positive("trajectory_every", 10),
        "out": reader.get("out", (_STR,), "runs/compare"),
        "description": reader.get("description", (_STR,), ""),
    }
    reader.done()
    return out


def _outputs(data) -> int:
    """Output units: one per class for integer labels, the target's width for reals."""
    import jax.numpy as jnp

    if jnp.issubdtype(data.train_y.dtype, jnp.floating):
        return int(data.train_y.shape[-1])
    return int(max(data.train_y.max(), data.test_y.max())) + 1


def _tomllib():
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError(
                "--config: reading TOML needs Python >= 3.11 (tomllib) or `pip install tomli`."
            ) from None
    return tomllib


def load_experiment(path: str) -> Experiment:
    """Parse and check the TOML experiment at `path` (see the module docstring)."""
    tomllib = _tomllib()
    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"--config: no file {path!r}.") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}.") from None
    top = _Reader(path, "", raw)
    for name in ("experiment", "data", "network", "loss"):
        top.seen.add(name)
    rules = top.get("rules", (_LIST,))
    top.done()
    if not rules:
        top.fail("rules", "needs at least one [[rules]] table")
    experiment = _experiment(path, raw.get("experiment", {}))
    data, data_spec = _data(path, raw.get("data", {}))
    n_in, n_out = int(data.train_x.shape[-1]), _outputs(data)
    model, network_spec = _network(path, raw.get("network", {}), n_in, n_out)
    loss, loss_spec = _loss(path, raw.get("loss", {}))
    specs = [_rule(path, i, t) for i, t in enumerate(rules)]
    description = experiment.pop("description") or (
        f"{path}: data {data_spec}; network {network_spec}; loss {loss_spec}."
    )
    out, grid = experiment.pop("out"), experiment.pop("grid")
    return Experiment(path, model, specs, data, loss, experiment, out, grid, description, raw)
