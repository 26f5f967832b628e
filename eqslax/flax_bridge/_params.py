"""The one naming of an eqslax model's trainable leaves that both Flax APIs see.

A trainable leaf (per `eqslax.trainable_mask`) at the PyTree path
`model.layers[2].weight` becomes the Flax parameter `params["layers"]["2"]["weight"]`:
attribute names, sequence indices and dict keys, each as a string, nested in that order.
Every other leaf (frozen parameters, surrogate hyperparameters, integer arrays) and all
static structure stay with the eqslax model and are never Flax parameters.
"""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import PyTree

from .._neurons import AbstractNeuron
from .._parameters import trainable_mask


def _entry_name(entry: Any) -> str:
    if isinstance(entry, jtu.GetAttrKey):
        return entry.name
    if isinstance(entry, jtu.SequenceKey):
        return str(entry.idx)
    if isinstance(entry, jtu.DictKey):
        return str(entry.key)
    if isinstance(entry, jtu.FlattenedIndexKey):
        return str(entry.key)
    raise TypeError(f"flax_bridge: cannot name the PyTree path entry {entry!r}.")


def _names(path) -> tuple[str, ...]:
    return tuple(_entry_name(entry) for entry in path)


def check_model(model: Any, owner: str) -> None:
    if not isinstance(model, AbstractNeuron):
        raise TypeError(
            f"{owner}: `model` must be an eqslax neuron or Connect, got {type(model).__name__}."
        )


def _trainable_leaves(model: AbstractNeuron):
    """`(names, leaves, treedef, rest)`: the trainable leaves in flattening order."""
    mask = trainable_mask(model)
    trainable, rest = eqx.partition(model, mask)
    with_paths, treedef = jtu.tree_flatten_with_path(trainable)
    names = [_names(path) for path, _ in with_paths]
    leaves = [leaf for _, leaf in with_paths]
    return names, leaves, treedef, rest


def to_flax_params(model: AbstractNeuron) -> dict[str, Any]:
    """The trainable leaves of `model` as the nested dict of Flax parameters.

    `to_flax_params(model)["layers"]["0"]["weight"] is model.layers[0].weight`; a model
    without trainable leaves gives `{}`. This is what `LinenCell` initialises its
    `params` to and what `NNXCell` holds as `nnx.Param`s.
    """
    check_model(model, "to_flax_params")
    names, leaves, _, _ = _trainable_leaves(model)
    params: dict[str, Any] = {}
    for name, leaf in zip(names, leaves):
        node = params
        for depth, key in enumerate(name[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ValueError(
                    f"to_flax_params: the parameter names {'/'.join(name)} and "
                    f"{'/'.join(name[: depth + 1])} collide."
                )
            node = child
        if name[-1] in node:
            raise ValueError(f"to_flax_params: two leaves are both named {'/'.join(name)}.")
        node[name[-1]] = leaf
    return params


def _flat_names(params: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if hasattr(params, "items") and not hasattr(params, "shape"):
        flat: dict[tuple[str, ...], Any] = {}
        for key, value in params.items():
            flat.update(_flat_names(value, prefix + (str(key),)))
        return flat
    return {prefix: params}


def from_flax_params(model: AbstractNeuron, params: PyTree) -> AbstractNeuron:
    """`model` with its trainable leaves replaced by `params` (the inverse mapping).

    `params` is a nested dict laid out as `to_flax_params` lays it out (a Flax
    `params` collection or `FrozenDict` will do). Every trainable leaf must be present
    with its shape; nothing else may be. The result keeps the dtypes of `params` (so a
    gradient dict gives a gradient-valued model), and every other leaf of `model`.
    """
    check_model(model, "from_flax_params")
    if not hasattr(params, "items"):
        raise TypeError(
            f"from_flax_params: `params` must be a nested dict of arrays, got "
            f"{type(params).__name__}."
        )
    names, leaves, treedef, rest = _trainable_leaves(model)
    given = _flat_names(params)
    missing = sorted("/".join(n) for n in names if n not in given)
    extra = sorted("/".join(n) for n in given if n not in set(names))
    if missing or extra:
        raise ValueError(
            f"from_flax_params: `params` must name exactly the trainable leaves of "
            f"{type(model).__name__}; missing {missing}, unexpected {extra}."
        )
    new_leaves = []
    for name, leaf in zip(names, leaves):
        value = given[name]
        shape = getattr(value, "shape", None)
        if shape is None or tuple(shape) != tuple(leaf.shape):
            raise ValueError(
                f"from_flax_params: parameter {'/'.join(name)} must have shape "
                f"{tuple(leaf.shape)}, got {shape}."
            )
        new_leaves.append(jnp.asarray(value))
    return eqx.combine(jtu.tree_unflatten(treedef, new_leaves), rest)


class Static:
    """Holds an object in a static field or attribute (a hashed, never-traced place).

    Compared by value when the object is hashable (two equal Flax cells share compiled
    code), otherwise by identity (an object holding arrays, such as an eqslax model).
    """

    __slots__ = ("value", "by_value")

    def __init__(self, value: Any):
        self.value = value
        try:
            hash(value)
            self.by_value = True
        except TypeError:
            self.by_value = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Static):
            return NotImplemented
        if self.by_value and other.by_value:
            return type(self.value) is type(other.value) and bool(self.value == other.value)
        return self.value is other.value

    def __hash__(self) -> int:
        return hash(self.value) if self.by_value else id(self.value)

    def __repr__(self) -> str:
        return f"Static({self.value!r})"
