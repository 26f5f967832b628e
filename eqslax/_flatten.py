"""`Flatten`: a stateless layer that turns a feature map into a vector."""

import math
from collections.abc import Sequence

import equinox as eqx
from jaxtyping import Array, Float

from ._checks import shape_tuple


class Flatten(eqx.Module):
    r"""Reshape an input of shape `in_shape` to a vector: $y = \mathrm{vec}(x)$.

    The row-major (C-order) flattening of `jnp.reshape`, as `torch.nn.Flatten` of one
    sample. A stateless layer for [`eqslax.Connect`][], between a convolution and an
    `eqx.nn.Linear`; it exports to and imports from NIR's `Flatten` node.
    """

    in_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, in_shape: int | Sequence[int]):
        """**Arguments:**

        - `in_shape`: the shape of one input, e.g. `(2, 28, 28)`.
        """
        self.in_shape = shape_tuple(in_shape, "in_shape", "Flatten")

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (math.prod(self.in_shape),)

    def __call__(self, x: Float[Array, "*in"]) -> Float[Array, " out"]:
        if tuple(x.shape) != self.in_shape:
            raise ValueError(f"Flatten: `x` must have shape {self.in_shape}, got {x.shape}.")
        return x.reshape(-1)
