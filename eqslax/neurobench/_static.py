"""NeuroBench's static metrics: properties of the model alone, computed once."""

import abc

import equinox as eqx
import jax.tree_util as jtu
import numpy as np

from .._neurons import AbstractNeuron
from .._parameters import trainable_mask
from .._surrogate import AbstractSurrogate
from ._activity import connection_weights


class AbstractStaticMetric(eqx.Module):
    """A number computed from the model alone; `Benchmark` reports it under the class
    name."""

    @abc.abstractmethod
    def __call__(self, model: AbstractNeuron) -> int | float:
        """The metric of `model`."""


class ParameterCount(AbstractStaticMetric):
    r"""Number of trained parameters, $\sum$ of the sizes of the leaves that
    `eqslax.trainable_mask` marks (NeuroBench: `parameters()`). Frozen decays and
    thresholds are buffers, not parameters, like snnTorch's fixed `beta`."""

    def __call__(self, model: AbstractNeuron) -> int:
        leaves = jtu.tree_leaves(eqx.filter(model, trainable_mask(model)))
        return int(sum(leaf.size for leaf in leaves))


class Footprint(AbstractStaticMetric):
    r"""Memory of the model in bytes: $\sum$ size $\times$ item size over every
    array of the model, trained or not (NeuroBench: parameters plus buffers), zeros
    included. Surrogate hyperparameters are left out: they shape training only and play
    no part in the forward pass."""

    def __call__(self, model: AbstractNeuron) -> int:
        nodes = jtu.tree_leaves(model, is_leaf=lambda node: isinstance(node, AbstractSurrogate))
        arrays = [n for n in nodes if eqx.is_array(n) and not isinstance(n, AbstractSurrogate)]
        return int(sum(a.size * a.dtype.itemsize for a in arrays))


class ConnectionSparsity(AbstractStaticMetric):
    r"""Fraction of zero connection weights, rounded to 4 decimals:
    $\#\{W_{ij} = 0\} / \#\{W_{ij}\}$ over Linear and Conv weights, `cat`
    projections and the recurrent weights of RLIF and LTC. Biases and neuron parameters
    are not connections. A model without connections scores 0."""

    def __call__(self, model: AbstractNeuron) -> float:
        weights = [np.asarray(w) for _, w in connection_weights(model)]
        total = sum(w.size for w in weights)
        if total == 0:
            return 0.0
        zeros = sum(int(np.count_nonzero(w == 0)) for w in weights)
        return round(zeros / total, 4)
