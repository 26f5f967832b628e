r"""Losses on a model's output sequence, with one normalisation used everywhere.

**Normalisation (every driver and every learning rule).** A loss is computed per
sample on its whole output sequence :math:`y_{1..T}` and averaged over the batch:

.. math:: \mathcal L = \frac1B \sum_{b=1}^B L(y^{(b)}_{1..T}, c^{(b)})

- :class:`PerStep` (per-step convention, Slax Fig. 9): :math:`L = \frac1T\sum_t
  \ell(y_t, c)`, the *mean* over time of a per-step loss. Online rules see the step
  term :math:`\ell(y_t, c)` and update from it; deferred online rules sum the step
  gradients and divide by :math:`T`, so they follow the same :math:`\mathcal L`.
- :class:`Accumulated` (accumulated convention): :math:`L = \ell(\mathrm{reduce}_t\,
  y_t, c)` with ``reduce`` one of ``"sum"`` (spike counts), ``"mean"`` or ``"max"``
  (membrane readouts). Only offline rules (BPTT) can train it.

The per-step function :math:`\ell(\text{output}, \text{label})` is optax-style, e.g.
``optax.softmax_cross_entropy_with_integer_labels``.
"""

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PyTree

from ._checks import check_choice

_REDUCTIONS = {"sum": jnp.sum, "mean": jnp.mean, "max": jnp.max}


class AbstractLoss(eqx.Module):
    """A per-sample loss on an output sequence ``(time, *out)`` and an integer label.

    ``needs_layers`` losses also receive every layer's outputs (rate regularisers).
    """

    per_step: ClassVar[bool] = False
    needs_layers: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(
        self, outputs: Float[Array, "time ..."], label: Int[Array, ""], layers=None
    ) -> Float[Array, ""]:
        """The loss :math:`L` of one sample."""

    @abc.abstractmethod
    def predict(self, outputs: Float[Array, "time ..."]) -> Int[Array, ""]:
        """The class this loss's readout assigns to one sample."""

    def target_at(self, target: PyTree, t: Int[Array, ""]) -> PyTree:
        """The target of step $t$ of one sample, as online rules hand it to `step`.

        **Arguments:**

        - `target`: the target of one sample, as given to the rule or driver.
        - `t`: the step index, $0 \\le t < T$ (a traced integer).

        The default returns `target` unchanged: one label for the whole sequence. A loss
        that takes a target per step overrides it (e.g. to return `target[t]`).
        """
        del t
        return target


class PerStep(AbstractLoss):
    r""":math:`L = \frac1T \sum_t \ell(y_t, c)`; prediction :math:`\arg\max_c \sum_t y_{t,c}`.

    **Arguments:** ``fn(output, label) -> scalar`` (default softmax cross-entropy, the
    output at each step used as logits, as in the OTPE and Slax experiments).
    """

    per_step: ClassVar[bool] = True
    fn: Callable[[Array, Array], Array] = optax.softmax_cross_entropy_with_integer_labels

    def step(self, output: Float[Array, "*out"], label: Int[Array, ""]) -> Float[Array, ""]:
        r"""The step term :math:`\ell(y_t, c)`."""
        return self.fn(output, label)

    def __call__(self, outputs, label, layers=None):
        return jnp.mean(jax.vmap(self.step, in_axes=(0, None))(outputs, label))

    def predict(self, outputs):
        return jnp.argmax(jnp.sum(outputs, axis=0))


class Accumulated(AbstractLoss):
    r""":math:`L = \ell(\mathrm{reduce}_t\, y_t, c)`; prediction :math:`\arg\max` of the same.

    ``reduce="sum"`` with spikes gives a loss on spike counts; ``"max"`` and ``"mean"``
    are the usual membrane readouts of an :class:`~eqslax.LI` output layer.

    **Arguments:** ``fn(reduced, label) -> scalar`` (default softmax cross-entropy) and
    ``reduce``.
    """

    fn: Callable[[Array, Array], Array] = optax.softmax_cross_entropy_with_integer_labels
    reduce: str = eqx.field(static=True, default="sum")

    def __check_init__(self):
        check_choice(self.reduce, "reduce", tuple(_REDUCTIONS), "Accumulated")

    def __call__(self, outputs, label, layers=None):
        return self.fn(_REDUCTIONS[self.reduce](outputs, axis=0), label)

    def predict(self, outputs):
        return jnp.argmax(_REDUCTIONS[self.reduce](outputs, axis=0))


class CountMSE(eqx.Module):
    r"""Spike-count MSE target (snnTorch's ``mse_count_loss``):
    :math:`\ell(n, c) = \frac1C\sum_j (n_j - \hat n_j)^2`, :math:`\hat n_c =` ``correct``,
    :math:`\hat n_{j\ne c} =` ``incorrect``. Use as ``Accumulated(CountMSE(...), "sum")``.
    """

    correct: float = 8.0
    incorrect: float = 1.0

    def __call__(self, counts: Float[Array, " out"], label: Int[Array, ""]) -> Float[Array, ""]:
        target = jnp.where(jnp.arange(counts.shape[-1]) == label, self.correct, self.incorrect)
        return jnp.mean((counts - target) ** 2)


class RateRegularised(AbstractLoss):
    r"""A loss plus a firing-rate regulariser on every spiking layer of the network.

    .. math:: L' = L + \mu \sum_l \frac{1}{n_l}\sum_i (\bar s^l_i - r^*)^2,
              \quad \bar s^l_i = \frac1T\sum_t s^l_{t,i}

    ``layer_mask`` selects the spiking layers (see :func:`spiking_layers`); linear maps
    and ``LI`` readouts have no firing rate.

    **Arguments:** ``loss``; ``strength`` :math:`\mu` (default 1e-2); ``target_rate``
    :math:`r^*` spikes per step (default 0.05); ``layer_mask`` a tuple of bools, one per
    layer, selecting the regularised layers.
    """

    needs_layers: ClassVar[bool] = True
    loss: AbstractLoss
    layer_mask: tuple[bool, ...] = eqx.field(static=True)
    strength: float = 1e-2
    target_rate: float = 0.05

    def __call__(self, outputs, label, layers=None):
        base = self.loss(outputs, label, layers)
        if layers is None:
            raise ValueError("RateRegularised: needs every layer's outputs (`layers`).")
        if len(layers) != len(self.layer_mask):
            raise ValueError(
                f"RateRegularised: `layer_mask` has {len(self.layer_mask)} entries but the "
                f"model has {len(layers)} layers."
            )
        penalty = sum(
            jnp.mean((jnp.mean(y, axis=0) - self.target_rate) ** 2)
            for y, keep in zip(layers, self.layer_mask)
            if keep
        )
        return base + self.strength * penalty

    def predict(self, outputs):
        return self.loss.predict(outputs)


def spiking_layers(model) -> tuple[bool, ...]:
    """One bool per layer of a ``Connect`` (or the neuron itself): is it spiking?"""
    from ._connect import Connect
    from ._neurons import AbstractSpikingPopulation

    layers = model.layers if isinstance(model, Connect) else (model,)
    return tuple(isinstance(layer, AbstractSpikingPopulation) for layer in layers)


def accuracy(loss: AbstractLoss, outputs: Float[Array, "batch time *out"], labels) -> Array:
    """Fraction of samples whose ``loss.predict`` equals the label."""
    return jnp.mean(jax.vmap(loss.predict)(outputs) == labels)
