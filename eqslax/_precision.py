"""Which floating-point precisions a training step accepts.

- float32 and float64 parameters train as usual.
- bfloat16 parameters train: bfloat16 has float32's exponent range, so gradients and
  optimiser statistics do not underflow. The data must then be bfloat16 too (a float32
  input would promote the scan carry to float32 and break it), and the state, outputs and
  updates stay bfloat16. Expect gradients within a few tenths of a percent of the float32
  ones in direction (measured in the tests).
- float16 parameters are refused by every training step: its 5-bit exponent underflows
  small gradients and optimiser statistics (`optax.adam`'s `eps = 1e-8` is 0 in
  float16, so the first update is NaN). float16 models still run under `simulate`.
"""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu

from ._parameters import trainable

_LOW = (jnp.dtype(jnp.bfloat16),)


def _float_leaves(model):
    leaves = jtu.tree_leaves_with_path(eqx.filter(trainable(model), eqx.is_inexact_array))
    return [(jtu.keystr(path), leaf) for path, leaf in leaves]


def _mix(leaves) -> tuple[list[str], str]:
    """The float dtypes among `(path, leaf)` pairs, and each with its first parameter."""
    dtypes = sorted({str(leaf.dtype) for _, leaf in leaves})
    first = {str(leaf.dtype): path for path, leaf in reversed(leaves)}
    return dtypes, ", ".join(f"{d} (e.g. `{first[d]}`)" for d in dtypes)


def low_precision_dtype(model):
    """The dtype of a model's trainable parameters when it is bfloat16, else `None`."""
    dtypes = {jnp.dtype(leaf.dtype) for _, leaf in _float_leaves(model)}
    low = [d for d in dtypes if d in _LOW]
    return low[0] if low else None


def check_training_precision(model, owner: str) -> None:
    """Refuse float16 parameters, and bfloat16 mixed with other float dtypes."""
    leaves = _float_leaves(model)
    for path, leaf in leaves:
        if jnp.dtype(leaf.dtype) == jnp.float16:
            raise TypeError(
                f"{owner}: parameter `{path}` is float16, which eqslax does not train: its "
                f"5-bit exponent underflows gradients and optimiser statistics (optax.adam's "
                f"eps = 1e-8 is 0 in float16, so the first update is NaN). Train in bfloat16 "
                f"(float32's exponent range) or float32; float16 models still run under "
                f"simulate."
            )
    dtypes, shown = _mix(leaves)
    if len(dtypes) > 1 and any(jnp.dtype(d) in _LOW for d in dtypes):
        raise TypeError(
            f"{owner}: the model's parameters mix {shown}. A bfloat16 model must be "
            f"bfloat16 throughout; cast every floating leaf, e.g. jax.tree.map(lambda x: "
            f"x.astype(jnp.bfloat16) if eqx.is_inexact_array(x) else x, model)."
        )


def check_input_precision(model, xs, name: str, owner: str) -> None:
    """A bfloat16 model takes bfloat16 data."""
    low = low_precision_dtype(model)
    if low is not None and jnp.dtype(xs.dtype) != low:
        raise TypeError(
            f"{owner}: `{name}` is {xs.dtype} but the model's parameters are {low}; cast the "
            f"data to match ({name}.astype(jnp.{low})) so that the time loop keeps one dtype."
        )


def check_one_float_dtype(model, owner: str) -> None:
    """Layer-wise rules carry traces in one dtype: refuse parameters of several."""
    dtypes, shown = _mix(_float_leaves(model))
    if len(dtypes) > 1:
        raise TypeError(
            f"{owner}: the model's trainable parameters mix {shown}; its traces need one "
            f"dtype. Cast every floating leaf to one, e.g. jax.tree.map(lambda x: "
            f"x.astype(jnp.{dtypes[-1]}) if eqx.is_inexact_array(x) else x, model)."
        )
