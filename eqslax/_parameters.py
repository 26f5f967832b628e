"""Which leaves of a model are trained: the mask every rule and optimiser uses."""

import equinox as eqx
import jax.tree_util as jtu
from jaxtyping import PyTree

from ._delay import AbstractDelay
from ._neurons import AbstractPopulation
from ._surrogate import AbstractSurrogate


def _all_false(tree):
    return jtu.tree_map(lambda _: False, tree)


def _node_mask(node):
    if isinstance(node, AbstractSurrogate):
        return _all_false(node)  # surrogate shapes are hyperparameters, never trained
    if isinstance(node, (AbstractPopulation, AbstractDelay)):
        mask = jtu.tree_map(_node_mask, node, is_leaf=lambda n: n is not node and _is_special(n))
        for name in node.frozen:
            mask = eqx.tree_at(lambda m, name=name: getattr(m, name), mask, replace_fn=_all_false)
        return mask
    return eqx.is_inexact_array(node)


def _is_special(node) -> bool:
    return isinstance(node, (AbstractSurrogate, AbstractPopulation, AbstractDelay))


def trainable_mask(model: PyTree) -> PyTree[bool]:
    """A PyTree of bools shaped like `model`: `True` on the leaves that learning
    rules differentiate and optimisers update.

    Floating-point arrays are trainable, except surrogate hyperparameters and the
    parameters a neuron or delay layer lists in `frozen` (e.g. `decay` unless
    `train_decay`, a `DCLSDelay`'s kernel width).
    """
    return jtu.tree_map(_node_mask, model, is_leaf=_is_special)


def trainable(model: PyTree) -> PyTree:
    """The trainable part of `model` (other leaves `None`), as `eqx.filter` does."""
    return eqx.filter(model, trainable_mask(model))
