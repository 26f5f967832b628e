"""Flax -> eqslax: a Flax RNN cell (linen or NNX) as an eqslax neuron."""

from collections.abc import Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from flax import linen, nnx
from flax.core import unfreeze
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .._checks import check_float_array, shape_tuple
from .._neurons import AbstractNeuron
from ._params import Static
from ._to_flax import LinenCell, NNXCell


class FlaxState(eqx.Module):
    """State of a `FlaxNeuron` or `NNXNeuron`: the wrapped cell's carry,
    unbatched (for `LSTMCell`, the tuple `(c, h)`)."""

    carry: PyTree


def _resolve_in_shape(cell: Any, in_shape: Any, owner: str) -> tuple[int, ...]:
    if isinstance(in_shape, Sequence) and len(in_shape) == 0:
        return ()  # scalar input per step
    if in_shape is not None:
        return shape_tuple(in_shape, "in_shape", owner)
    if isinstance(cell, (LinenCell, NNXCell)):
        model = cell.model if isinstance(cell, LinenCell) else cell.template.value
        return tuple(model.in_shape)
    raise ValueError(
        f"{owner}: Flax cells do not state their input shape; pass `in_shape`, the shape of "
        f"one unbatched step's input, e.g. in_shape=(16,)."
    )


def _check_step_shapes(carry, new_carry, y, out_shape, owner: str) -> tuple[int, ...]:
    """A step must return a carry of the structure and shapes it received (so that it can
    be scanned) and, when `out_shape` is given, an output of that shape."""
    same_structure = jtu.tree_structure(carry) == jtu.tree_structure(new_carry)
    if not same_structure or any(
        jnp.shape(a) != jnp.shape(b)
        for a, b in zip(jtu.tree_leaves(carry), jtu.tree_leaves(new_carry))
    ):
        raise ValueError(
            f"{owner}: one step must return a carry shaped like `initialize_carry`'s "
            f"({jtu.tree_map(jnp.shape, carry)}), got {jtu.tree_map(jnp.shape, new_carry)}."
        )
    inferred = tuple(y.shape)
    if out_shape is not None:
        given = shape_tuple(out_shape, "out_shape", owner)
        if given != inferred:
            raise ValueError(f"{owner}: `out_shape` is {given} but one step returns {inferred}.")
    return inferred


def _as_arrays(tree: PyTree) -> PyTree:
    return jtu.tree_map(jnp.asarray, tree)


class FlaxNeuron(AbstractNeuron):
    r"""A `flax.linen` RNN cell as an eqslax neuron: $(h_t, y_t) = f_\theta(h_{t-1}, x_t)$.

    Any cell with the `linen.RNNCellBase` protocol will do: `linen.LSTMCell`,
    `linen.GRUCell`, or a spiking cell written in Flax style with an explicit carry.

    **Parameters.** `params` is the cell's Flax `params` collection (a nested dict),
    held as array leaves of this module: every floating leaf is trainable, so eqslax
    rules, `eqx.apply_updates` and optax train it like any eqslax parameter. A step is
    `cell.apply({"params": params}, carry, x)`.

    **Carry.** The state is `FlaxState` holding the cell's carry for one unbatched
    sample; `init_state()` is `cell.initialize_carry(jax.random.key(carry_seed),
    in_shape)`, called on the unbound cell.

    **Batching.** The cell is called with unbatched inputs of shape `in_shape` (Flax
    cells treat leading axes as batch axes, so none is the usual case); batches come from
    `jax.vmap` like for every eqslax neuron.

    **Rejected cells.** A cell whose call changes Flax variables other than `params`
    (`batch_stats` of `BatchNorm`, `intermediates` from `sow`, counters) or needs
    PRNG streams at apply time (`Dropout`) has hidden state that an explicit-state step
    cannot carry; such cells raise `ValueError` when wrapped.

    `elementwise` is `False`: the bridge cannot know the cell's Jacobian structure.
    Forward-mode (`jax.jvp`, RTRL) and reverse-mode differentiation both go through.
    """

    elementwise: ClassVar[bool] = False

    params: PyTree
    cell_holder: Static = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], tuple[int, ...]] = eqx.field(static=True)
    carry_seed: int = eqx.field(static=True)

    def __init__(
        self,
        cell: linen.Module,
        in_shape: int | Sequence[int] | None = None,
        *,
        params: PyTree | None = None,
        key: PRNGKeyArray | None = None,
        out_shape: int | Sequence[int] | None = None,
        carry_seed: int = 0,
    ):
        """**Arguments:**

        - `cell`: a `flax.linen` RNN cell (`initialize_carry(rng, input_shape)` and
          `__call__(carry, x) -> (carry, y)`).
        - `in_shape`: shape of one unbatched step's input, e.g. `(16,)`; inferred only
          for a `LinenCell`.
        - `params`: the cell's `params` collection (e.g. `variables["params"]` from
          `cell.init`, or `["params"]["cell"]` from a `linen.RNN`); default:
          initialised with `key`.
        - `key`: PRNG key for `cell.init`; required when `params` is not given.
        - `out_shape`: checked against the output shape inferred with
          `jax.eval_shape` (default: inferred).
        - `carry_seed`: seed of the key passed to `initialize_carry` (default 0).
        """
        owner = "FlaxNeuron"
        if not isinstance(cell, linen.Module):
            raise TypeError(
                f"{owner}: `cell` must be a flax.linen RNN cell, got {type(cell).__name__}; "
                f"wrap NNX modules with NNXNeuron."
            )
        in_shape = _resolve_in_shape(cell, in_shape, owner)
        x = jax.ShapeDtypeStruct(in_shape, jnp.result_type(float))
        try:
            carry = cell.initialize_carry(jax.random.key(carry_seed), in_shape)
        except Exception as error:
            raise ValueError(
                f"{owner}: `cell.initialize_carry(rng, {in_shape})` failed: {error}"
            ) from error
        variables = self._variables(cell, carry, x, key, params, owner)
        self.params = variables
        try:
            new_carry, y = jax.eval_shape(
                lambda p, c, x: cell.apply({"params": p}, c, x), variables, carry, x
            )
        except Exception as error:
            raise ValueError(
                f"{owner}: applying the cell with these `params` to an input of shape "
                f"{in_shape} failed (does its call need PRNG streams or mutable "
                f"collections?): {error}"
            ) from error
        self.shapes = (in_shape, _check_step_shapes(carry, new_carry, y, out_shape, owner))
        self.cell_holder = Static(cell)
        self.carry_seed = int(carry_seed)

    @staticmethod
    def _variables(cell, carry, x, key, params, owner) -> PyTree:
        """The `params` collection, after checking that `init` creates nothing else."""
        if params is None and key is None:
            raise ValueError(f"{owner}: pass `params`, or `key` to initialise them.")
        try:
            if params is None:  # initialise for real: it also tells the collections
                created = cell.init(key, carry, jnp.zeros(x.shape, x.dtype))
            else:
                created = jax.eval_shape(cell.init, jax.random.key(0), carry, x)
        except Exception as error:
            raise ValueError(
                f"{owner}: `cell.init` failed on an input of shape {x.shape}: {error}"
            ) from error
        others = sorted(name for name in created if name != "params")
        if others:
            raise ValueError(
                f"{owner}: the cell keeps Flax collections besides `params` ({others}); "
                f"a step would have to mutate them, which an eqslax neuron cannot do. Remove "
                f"BatchNorm/sow/mutable variables, or carry such values in the carry."
            )
        if params is None:
            return _as_arrays(unfreeze(created.get("params", {})))
        params = unfreeze(params)
        expected = jtu.tree_map(jnp.shape, unfreeze(created.get("params", {})))
        received = jtu.tree_map(jnp.shape, params)
        if jtu.tree_structure(expected) != jtu.tree_structure(received) or expected != received:
            raise ValueError(
                f"{owner}: `params` must have the layout `cell.init` creates, {expected}, "
                f"got {received}."
            )
        return _as_arrays(params)

    @property
    def cell(self) -> linen.Module:
        """The wrapped `flax.linen` cell (unbound)."""
        return self.cell_holder.value

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.shapes[0]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shapes[1]

    def init_state(self) -> FlaxState:
        carry = self.cell.initialize_carry(jax.random.key(self.carry_seed), self.in_shape)
        return FlaxState(carry=carry)

    def __call__(self, state: FlaxState, x: Float[Array, "*in"]) -> tuple[FlaxState, Array]:
        check_float_array(x, "x", self.in_shape, "FlaxNeuron")
        carry, y = self.cell.apply({"params": self.params}, state.carry, x)
        return FlaxState(carry=carry), y


class NNXNeuron(AbstractNeuron):
    r"""A `flax.nnx` RNN cell as an eqslax neuron: $(h_t, y_t) = f_\theta(h_{t-1}, x_t)$.

    The module must follow the `nnx.RNNCellBase` protocol
    (`initialize_carry(input_shape, rngs)`, `__call__(carry, x) -> (carry, y)`), as
    `nnx.LSTMCell`, `nnx.GRUCell` and `NNXCell` do.

    **Parameters.** `nnx.split(module, nnx.Param)` separates the module into its graph
    definition (static here) and its `nnx.Param` values, held as `params`: the pure
    nested dict of `nnx.state(module, nnx.Param).to_pure_dict()`, every floating leaf
    trainable. A step merges them back (`nnx.merge`) and calls the module; the module
    given is never mutated. `to_nnx` returns a module with the current values.

    **Carry.** The state is `FlaxState` with the module's carry for one unbatched
    sample, from `initialize_carry(in_shape, nnx.Rngs(carry_seed))`.

    **Batching.** Unbatched inputs of shape `in_shape`; batches by `jax.vmap`.

    **Rejected modules.** Any NNX state that is not an `nnx.Param` (`BatchStat` of
    `BatchNorm`, the `RngState` that `Dropout` or `Rngs` attributes advance,
    caches, plain `nnx.Variable`s) raises `ValueError` when wrapping: a call could
    mutate it, and an explicit-state step would silently lose the change.
    """

    elementwise: ClassVar[bool] = False

    params: PyTree
    graphdef: Any = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], tuple[int, ...]] = eqx.field(static=True)
    carry_seed: int = eqx.field(static=True)

    def __init__(
        self,
        module: nnx.Module,
        in_shape: int | Sequence[int] | None = None,
        *,
        out_shape: int | Sequence[int] | None = None,
        carry_seed: int = 0,
    ):
        """**Arguments:**

        - `module`: an `nnx` RNN cell; its `nnx.Param` values are copied.
        - `in_shape`: shape of one unbatched step's input; inferred only for an
          `NNXCell`.
        - `out_shape`: checked against the inferred output shape (default: inferred).
        - `carry_seed`: seed of the `nnx.Rngs` passed to `initialize_carry`.
        """
        owner = "NNXNeuron"
        if not isinstance(module, nnx.Module):
            raise TypeError(
                f"{owner}: `module` must be a flax.nnx Module, got {type(module).__name__}; "
                f"wrap linen cells with FlaxNeuron."
            )
        if not callable(getattr(module, "initialize_carry", None)):
            raise TypeError(
                f"{owner}: `module` ({type(module).__name__}) must define "
                f"`initialize_carry(input_shape, rngs)` (the nnx.RNNCellBase protocol)."
            )
        graphdef, params, rest = nnx.split(module, nnx.Param, ...)
        hidden = sorted(
            f"{'/'.join(map(str, path))} ({type(variable).__name__})"
            for path, variable in nnx.to_flat_state(rest)
        )
        if hidden:
            raise ValueError(
                f"{owner}: `module` holds state other than nnx.Param: {hidden}. A call "
                f"could mutate it, which an eqslax neuron cannot do; remove BatchNorm, "
                f"Dropout and stored Rngs, or carry such values in the carry."
            )
        self.graphdef = graphdef
        self.params = _as_arrays(params.to_pure_dict())
        in_shape = _resolve_in_shape(module, in_shape, owner)
        self.carry_seed = int(carry_seed)
        carry = module.initialize_carry(in_shape, nnx.Rngs(self.carry_seed))
        x = jax.ShapeDtypeStruct(in_shape, jnp.result_type(float))
        try:
            new_carry, y = jax.eval_shape(
                lambda p, c, x: nnx.merge(graphdef, p)(c, x), self.params, carry, x
            )
        except Exception as error:
            raise ValueError(
                f"{owner}: calling the module on an input of shape {in_shape} failed: {error}"
            ) from error
        self.shapes = (in_shape, _check_step_shapes(carry, new_carry, y, out_shape, owner))

    def to_nnx(self) -> nnx.Module:
        """A new NNX module with the current `params` (e.g. after eqslax training)."""
        return nnx.merge(self.graphdef, self.params)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.shapes[0]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shapes[1]

    def init_state(self) -> FlaxState:
        carry = self.to_nnx().initialize_carry(self.in_shape, nnx.Rngs(self.carry_seed))
        return FlaxState(carry=carry)

    def __call__(self, state: FlaxState, x: Float[Array, "*in"]) -> tuple[FlaxState, Array]:
        check_float_array(x, "x", self.in_shape, "NNXNeuron")
        carry, y = self.to_nnx()(state.carry, x)
        return FlaxState(carry=carry), y
