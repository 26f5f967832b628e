"""The learning rules `eqslax compare` knows: one place for each rule's name, driver
and defaults. A user rule is registered in one line and is then usable by name from
Python and from a TOML experiment:

```python
eqslax.compare.register_rule("mine", MyRule, driver="online", lr=2e-3)
```
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import optax

from .._rules import (
    BPTT,
    FPTT,
    OSTL,
    OSTTP,
    OTPE,
    OTTT,
    RTRL,
    STDP,
    UORO,
    AbstractLearningRule,
    AbstractOnlineRule,
    ApproxOTPE,
    EProp,
    EventProp,
    TruncatedBPTT,
)

DRIVERS = ("offline", "online", "deferred", "fptt")
"""How a rule's gradient becomes parameter updates: `offline` (one update per batch,
`eqslax.train_offline`), `online` (one update per time step,
`eqslax.train_online`), `deferred` (an online rule's step gradients summed and
applied once per batch, `eqslax.train_online_deferred`), `fptt` (one update per
segment, `eqslax.train_fptt`)."""


class Rule(eqx.Module):
    """A learning rule as `eqslax.compare` trains it.

    **Arguments:**

    - `name`: the label used in every table and in `results.json`.
    - `rule`: the rule object (`eqslax.OSTL()`, `eqslax.FPTT(5)`, a user rule, ...).
    - `driver`: one of `"offline"`, `"online"`, `"deferred"`, `"fptt"`.
    - `lr`: the learning rate.
    - `optimizer`: `lr -> optax.GradientTransformation` (default `optax.adam`).
    - `description`: one line for the report.
    - `vmap_seeds`: whether the seeds of this rule may be trained as one vmapped program.
    """

    name: str = eqx.field(static=True)
    rule: Any
    driver: str = eqx.field(static=True)
    lr: float = eqx.field(static=True)
    optimizer: Callable[[float], optax.GradientTransformation] = eqx.field(
        static=True, default=optax.adam
    )
    description: str = eqx.field(static=True, default="")
    vmap_seeds: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Rule: `name` must be a non-empty string, got {self.name!r}.")
        if self.driver not in DRIVERS:
            raise ValueError(
                f"Rule {self.name!r}: `driver` must be one of {', '.join(DRIVERS)}, "
                f"got {self.driver!r}."
            )
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not self.lr > 0:
            raise ValueError(
                f"Rule {self.name!r}: `lr` must be a positive number, got {self.lr!r}."
            )
        if not callable(self.optimizer):
            raise TypeError(
                f"Rule {self.name!r}: `optimizer` must be a function lr -> optax transformation "
                f"(e.g. optax.adam), got {type(self.optimizer).__name__}."
            )
        _check_rule_fits_driver(self.name, self.rule, self.driver)

    def make_optimizer(self, lr: float | None = None) -> optax.GradientTransformation:
        return self.optimizer(self.lr if lr is None else lr)


def _check_rule_fits_driver(name, rule, driver) -> None:
    if driver == "fptt":
        wanted, ok = "an eqslax.FPTT(...)", isinstance(rule, FPTT)
    elif driver in ("online", "deferred"):
        wanted, ok = "an online rule (RTRL, OSTL, ...)", isinstance(rule, AbstractOnlineRule)
    else:
        wanted, ok = "a learning rule (BPTT, STDP, ...)", isinstance(rule, AbstractLearningRule)
    if not ok:
        raise TypeError(
            f"Rule {name!r}: driver {driver!r} needs {wanted}, got {type(rule).__name__}."
        )


class RuleEntry(eqx.Module):
    """A registry entry: `make(**options)` builds the rule; the rest are its defaults."""

    make: Callable[..., Any] = eqx.field(static=True)
    driver: str = eqx.field(static=True)
    lr: float = eqx.field(static=True)
    description: str = eqx.field(static=True, default="")
    optimizer: Callable[[float], optax.GradientTransformation] = eqx.field(
        static=True, default=optax.adam
    )
    vmap_seeds: bool = eqx.field(static=True, default=True)


RULES: dict[str, RuleEntry] = {}


def register_rule(
    name: str,
    make: Callable[..., Any],
    *,
    driver: str,
    lr: float,
    description: str = "",
    optimizer: Callable[[float], optax.GradientTransformation] = optax.adam,
    vmap_seeds: bool = True,
) -> None:
    """Make a rule selectable by `name` in `eqslax.compare(...)` and in TOML experiments.

    **Arguments:**

    - `name`: the registry name (lower case, no spaces).
    - `make`: `make(**options) -> rule`; `options` come from `rule(name, **options)` or
      a TOML rule's `options` table.
    - `driver`, `lr`, `description`, `optimizer`, `vmap_seeds`: as in
      [`eqslax.compare.Rule`][].
    """
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"register_rule: `name` must be a word without spaces, got {name!r}.")
    if not callable(make):
        raise TypeError(f"register_rule: `make` must be callable, got {type(make).__name__}.")
    if driver not in DRIVERS:
        raise ValueError(
            f"register_rule: `driver` must be one of {', '.join(DRIVERS)}, got {driver!r}."
        )
    RULES[name] = RuleEntry(make, driver, float(lr), description, optimizer, vmap_seeds)


def rule(
    name: str,
    *,
    label: str | None = None,
    driver: str | None = None,
    lr: float | None = None,
    options: dict | None = None,
    optimizer: Callable[[float], optax.GradientTransformation] | None = None,
) -> Rule:
    """The registered rule `name` as a [`eqslax.compare.Rule`][], with its defaults
    overridden by `driver`, `lr`, `optimizer` and `options` (passed to its `make`)."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; valid rules: {', '.join(sorted(RULES))}.")
    entry = RULES[name]
    try:
        built = entry.make(**(options or {}))
    except TypeError as error:
        raise ValueError(f"rule {name!r}: bad `options` {options!r}: {error}.") from None
    return Rule(
        name=label or name,
        rule=built,
        driver=driver or entry.driver,
        lr=entry.lr if lr is None else lr,
        optimizer=entry.optimizer if optimizer is None else optimizer,
        description=entry.description,
        vmap_seeds=entry.vmap_seeds,
    )


def make_rule(name: str) -> tuple[AbstractLearningRule, str]:
    """The rule called `name` and its driver; a clear error for unknown names."""
    spec = rule(name)
    return spec.rule, spec.driver


def _fptt(segments: int = 5, alpha: float = 0.5, inner: str | None = None) -> FPTT:
    return FPTT(segments, alpha=alpha, rule=None if inner is None else rule(inner).rule)


_ONLINE_LR, _OFFLINE_LR = 2e-3, 1e-2
register_rule(
    "bptt",
    BPTT,
    driver="offline",
    lr=_OFFLINE_LR,
    description="backpropagation through time (the reference)",
)
register_rule(
    "tbptt1",
    lambda: TruncatedBPTT(1),
    driver="offline",
    lr=_OFFLINE_LR,
    description="BPTT truncated to one step",
)
register_rule(
    "tbptt",
    lambda window=5: TruncatedBPTT(window),
    driver="offline",
    lr=_OFFLINE_LR,
    description="BPTT truncated to windows of k steps",
)
register_rule(
    "rtrl", RTRL, driver="online", lr=_ONLINE_LR, description="real-time recurrent learning (exact)"
)
register_rule(
    "snap",
    lambda n=1: RTRL(snap=n),
    driver="online",
    lr=_ONLINE_LR,
    description="SnAp-n: RTRL with the influence kept on its n-step pattern (n = 1 default)",
)
register_rule(
    "uoro",
    UORO,
    driver="online",
    lr=_ONLINE_LR,
    description="UORO: unbiased rank-one estimate of RTRL's influence",
)
register_rule(
    "ostl",
    OSTL,
    driver="online",
    lr=_ONLINE_LR,
    description="online spatio-temporal learning (per-layer exact)",
)
register_rule(
    "osttp",
    lambda seed=0, centered=False: OSTTP(key=jax.random.key(seed), centered=centered),
    driver="online",
    lr=_ONLINE_LR,
    description="OSTL with direct random target projection to the hidden layers",
)
register_rule(
    "ottt",
    OTTT,
    driver="online",
    lr=_ONLINE_LR,
    description="online training through time (presynaptic traces)",
)
register_rule(
    "otpe",
    OTPE,
    driver="online",
    lr=_ONLINE_LR,
    description="online training with postsynaptic estimates",
)
register_rule("aotpe", ApproxOTPE, driver="online", lr=_ONLINE_LR, description="approximate OTPE")
register_rule(
    "eprop", EProp, driver="online", lr=_ONLINE_LR, description="e-prop with symmetric feedback"
)
register_rule(
    "eventprop",
    EventProp,
    driver="offline",
    lr=_OFFLINE_LR,
    description="EventProp: exact adjoint gradients of a ContinuousTime network",
)
register_rule(
    "fptt",
    _fptt,
    driver="fptt",
    lr=_OFFLINE_LR,
    description="forward propagation through time (one update per segment)",
)
register_rule(
    "stdp",
    STDP,
    driver="offline",
    lr=1.0,
    optimizer=optax.sgd,
    description="pair-based STDP (unsupervised; weight change applied by SGD(1))",
)
