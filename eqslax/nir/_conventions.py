r"""Discrete time <-> NIR's continuous time: the formulas, and each peer's reading of them.

eqslax neurons step without a `dt`: $v_t = \lambda v_{t-1} + I_t$. NIR nodes are
ODEs, e.g. `LIF`: $\tau \dot v = (v_\mathrm{leak} - v) + R I$. A forward-Euler step
of length $\Delta t$ turns that ODE into

$$
v_t = \Big(1 - \frac{\Delta t}{\tau}\Big) v_{t-1} + \frac{R \Delta t}{\tau} I_t
      + \frac{\Delta t}{\tau} v_\mathrm{leak},
$$

so one eqslax step is the Euler step with $\lambda = 1 - \Delta t/\tau$, input gain
$g = R\Delta t/\tau = 1$ and $v_\mathrm{leak} = 0$, which gives

$$
\tau = \frac{\Delta t}{1 - \lambda}, \qquad R = \frac{1}{1 - \lambda}.
$$

Slax and snnTorch write the same numbers (with $\Delta t = 10^{-4}$); Spyx writes
$\tau = \Delta t/(1-\beta)$ but $R = \beta$, and reads $R$ back as
nothing. A `Convention` records such differences.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from .._surrogate import AbstractSurrogate, Arctan

# A gain within this relative distance of one is one: float32 files carry ~1e-7 rounding.
GAIN_RTOL = 1e-6


@dataclasses.dataclass(frozen=True)
class Convention:
    """How one library writes discrete-time neurons as NIR nodes.

    - `dt`: the step it assumes when none is given.
    - `euler_gain`: read `r` (and `w_in`) as the Euler input gain
      $g = R\\Delta t/\\tau$; `False` ignores them (Spyx writes `r = beta`).
    - `reset`, `reset_decay`: the reset its spiking nodes mean when a node does not say.
    - `detach_reset`, `surrogate`: how it trains: the reset's gradient cut or kept,
      and its default spike function (`None`: eqslax's default, `FastSigmoid()`).
    - `rnn_subgraphs`: read a four-node sub-graph `{Input, neuron, Linear, Output}` as
      a recurrent layer whatever its edges (snnTorch's importer and Spyx's exporter point
      the sub-graph's input at the recurrent weight, not at the neuron).
    """

    name: str
    dt: float
    euler_gain: bool
    reset: str
    reset_decay: bool
    rnn_subgraphs: bool
    detach_reset: bool = False
    surrogate: Callable[[], AbstractSurrogate] | None = None


CONVENTIONS = {
    # NIR read literally (reset to v_reset at the spike), with eqslax's metadata if present.
    "eqslax": Convention("eqslax", 1e-4, True, "zero", True, False),
    # snnTorch's Leaky/Synaptic defaults: subtractive reset of the previous step's spike,
    # its gradient cut (snnTorch detaches the reset), and its default ATan surrogate.
    "snntorch": Convention("snntorch", 1e-4, True, "subtract", False, True, True, Arctan),
    # Spyx's LIF/IF/CuBaLIF: subtractive reset of the spike of the carried membrane.
    "spyx": Convention("spyx", 1.0, False, "subtract", False, True),
}


def time_constant(decay: np.ndarray | float, dt: float) -> np.ndarray:
    r"""$\tau = \Delta t / (1 - \lambda)$."""
    return np.asarray(dt / (1.0 - np.asarray(decay)))


def resistance(decay: np.ndarray | float) -> np.ndarray:
    r"""$R = 1 / (1 - \lambda)$, the Euler gain $R\Delta t/\tau$ made one."""
    return np.asarray(1.0 / (1.0 - np.asarray(decay)))


def decay_from_tau(tau: np.ndarray | float, dt: float, where: str, field: str) -> np.ndarray:
    r"""$\lambda = 1 - \Delta t/\tau$, which must lie in $[0, 1]$."""
    tau = np.asarray(tau, dtype=np.float64)
    if np.any(~(tau > 0)):
        raise ValueError(f"from_nir: {where} has `{field}` <= 0 or NaN: {tau}.")
    decay = 1.0 - dt / tau
    if np.any(decay < 0):
        raise ValueError(
            f"from_nir: {where} has `{field}` = {tau.min()} < dt = {dt}, so the Euler decay "
            f"1 - dt/{field} is negative. Pass the `dt` the file was written with."
        )
    return np.asarray(decay)


def unit_gain(gain: np.ndarray | float) -> np.ndarray:
    """Snap gains within `GAIN_RTOL` of one to exactly one (rounding in the file)."""
    gain = np.asarray(gain, dtype=np.float64)
    return np.where(np.abs(gain - 1.0) <= GAIN_RTOL, 1.0, gain)


def check_positive_gain(gain: np.ndarray | float, where: str) -> np.ndarray:
    gain = np.asarray(gain)
    if np.any(~(gain > 0)) or np.any(~np.isfinite(gain)):
        raise ValueError(
            f"from_nir: {where} has input gain r*dt/tau = {gain}; eqslax needs a finite "
            f"positive gain to fold into the threshold or the incoming weights."
        )
    return gain


def leak_potential_is_zero(v_leak: np.ndarray | float, where: str) -> None:
    if np.any(np.asarray(v_leak) != 0):
        raise ValueError(
            f"from_nir: {where} has `v_leak` = {v_leak}; eqslax neurons leak towards 0, "
            f"so only v_leak = 0 can be imported."
        )
