"""`eqx.nn.Conv1d`/`Conv2d` <-> NIR's `Conv1d`/`Conv2d`.

Both are PyTorch's cross-correlation: weight `(C_out, C_in / groups, *kernel)`, bias
`(C_out,)`, symmetric zero padding per spatial axis (or `"same"`/`"valid"`), stride,
dilation and groups; NIR's `input_shape` is the spatial shape of one input.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import nir
import numpy as np

# What NIR cannot say about an eqslax layer: a convolution without a bias (NIR's always
# has one; `to_nir` writes zeros and this flag).
USE_BIAS_KEY = "eqslax.use_bias"
CONV_LAYERS = (eqx.nn.Conv1d, eqx.nn.Conv2d)


def _symmetric_padding(layer: eqx.nn.Conv, spatial, where: str):
    """NIR's padding of `layer`: one number per axis, or `"same"`."""
    stride, dilation = tuple(layer.stride), tuple(layer.dilation)
    padding = layer.padding
    if isinstance(padding, str):
        if padding == "SAME" and all(s == 1 for s in stride):
            return "same"  # PyTorch's and XLA's "same" agree at stride 1 (extra on the right)
        window = [d * (k - 1) + 1 for d, k in zip(dilation, layer.kernel_size)]
        padding = jax.lax.padtype_to_pads(spatial, window, stride, padding)
    pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
    if any(lo != hi for lo, hi in pairs):
        raise ValueError(
            f"to_nir: {where} ({type(layer).__name__}) pads {pairs} (before, after) per axis "
            f"on input {tuple(spatial)}; NIR pads both sides of an axis equally (or "
            f"'same' at stride 1). Use symmetric padding."
        )
    return tuple(lo for lo, _ in pairs)


def conv_node(layer: eqx.nn.Conv, in_shape, where: str) -> nir.NIRNode:
    """`layer`, which receives inputs of shape `in_shape` = `(C_in, *spatial)`."""
    name = type(layer).__name__
    if layer.padding_mode != "ZEROS":
        raise ValueError(
            f"to_nir: {where} ({name}) pads with {layer.padding_mode!r}; NIR convolutions "
            f"pad with zeros."
        )
    if in_shape is None or len(in_shape) != layer.num_spatial_dims + 1:
        raise ValueError(
            f"to_nir: {where} ({name}) needs its input shape (channels, *spatial) to be "
            f"written to NIR, got {in_shape}; export it inside a Connect with `in_shape`."
        )
    spatial = tuple(int(s) for s in in_shape[1:])
    padding = _symmetric_padding(layer, spatial, where)
    weight = np.array(layer.weight)
    if layer.use_bias:
        bias, metadata = np.array(np.reshape(layer.bias, (-1,))), {}
    else:
        bias, metadata = np.zeros(weight.shape[0], weight.dtype), {USE_BIAS_KEY: False}
    node = _make_node(layer, spatial, padding, weight, bias, metadata)
    # NIR 1.0 infers C_in = weight.shape[1] (PyTorch's C_in / groups) and a square kernel;
    # the true types keep the graph's type check honest for grouped and non-square kernels.
    out = jax.eval_shape(layer, jax.ShapeDtypeStruct(tuple(in_shape), layer.weight.dtype))
    node.input_type = {"input": np.array(in_shape)}
    node.output_type = {"output": np.array(out.shape)}
    return node


def nir_infers_wrong_types(node) -> bool:
    """Whether NIR's own shape inference gets `node` wrong (a grouped convolution, or a
    non-square 2-D kernel), so that `nir.read` with type checks rejects a correct file."""
    if not isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return False
    kernel = np.shape(node.weight)[2:]
    return int(node.groups) != 1 or len(set(kernel)) > 1


def _make_node(layer, spatial, padding, weight, bias, metadata) -> nir.NIRNode:
    if layer.num_spatial_dims == 1:
        return nir.Conv1d(
            input_shape=spatial[0],
            weight=weight,
            stride=int(layer.stride[0]),
            padding=padding if isinstance(padding, str) else padding[0],
            dilation=int(layer.dilation[0]),
            groups=int(layer.groups),
            bias=bias,
            metadata=metadata,
        )
    return nir.Conv2d(
        input_shape=spatial,
        weight=weight,
        stride=tuple(int(s) for s in layer.stride),
        padding=padding,
        dilation=tuple(int(d) for d in layer.dilation),
        groups=int(layer.groups),
        bias=bias,
        metadata=metadata,
    )


def _per_axis(value, dims: int, what: str, where: str) -> tuple[int, ...]:
    values = np.ravel(np.asarray(value))
    if values.size == 1:
        values = np.repeat(values, dims)
    if values.size != dims or np.any(values != np.round(values)):
        raise ValueError(f"from_nir: {where} has {what} {value!r}; need {dims} integers.")
    return tuple(int(v) for v in values)


def _padding(node, dims: int, stride, where: str):
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "US":
        padding = str(padding)
    if isinstance(padding, str):
        if padding == "valid":
            return 0
        if padding == "same" and all(s == 1 for s in stride):
            return "SAME"
        raise ValueError(
            f"from_nir: {where} has padding {padding!r} with stride {stride}; eqslax reads "
            f"'valid', 'same' at stride 1, or numbers."
        )
    return tuple((p, p) for p in _per_axis(padding, dims, "padding", where))


def conv_dims(node) -> int:
    return 1 if isinstance(node, nir.Conv1d) else 2


def conv_in_shape(node) -> tuple[int, ...] | None:
    """`(C_in, *spatial)` as the node declares it, or `None` without `input_shape`."""
    if node.input_shape is None:
        return None
    channels = int(np.shape(node.weight)[1]) * int(node.groups)
    return (channels, *_per_axis(node.input_shape, conv_dims(node), "input_shape", "a Conv"))


def conv_layer(node, where: str, in_shape) -> tuple[eqx.nn.Conv, tuple[int, ...]]:
    """The `eqx.nn.Conv1d`/`Conv2d` of `node` and its output shape."""
    dims = conv_dims(node)
    weight = np.asarray(node.weight)
    if weight.ndim != dims + 2:
        raise ValueError(
            f"from_nir: {where} ({type(node).__name__}) has a weight of shape {weight.shape}; "
            f"need (C_out, C_in / groups, {', '.join(['k'] * dims)})."
        )
    groups = int(node.groups)
    declared = conv_in_shape(node)
    shape = tuple(in_shape) if in_shape is not None else declared
    if shape is None:
        raise ValueError(
            f"from_nir: {where} ({type(node).__name__}) has no input_shape and receives an "
            f"input of unknown shape."
        )
    if declared is not None and declared != shape:
        raise ValueError(
            f"from_nir: {where} ({type(node).__name__}) declares input (C_in, *spatial) = "
            f"{declared} but receives {shape}."
        )
    if len(shape) != dims + 1 or shape[0] != weight.shape[1] * groups:
        raise ValueError(
            f"from_nir: {where} ({type(node).__name__}) takes {weight.shape[1] * groups} "
            f"channels in {dims} spatial dimensions but receives shape {shape}."
        )
    stride = _per_axis(node.stride, dims, "stride", where)
    use_bias = bool((node.metadata or {}).get(USE_BIAS_KEY, True))
    bias = np.reshape(np.asarray(node.bias, dtype=np.float64), (-1,))
    if not use_bias and np.any(bias != 0):
        raise ValueError(f"from_nir: {where} says {USE_BIAS_KEY} = False but has a bias.")
    make = eqx.nn.Conv1d if dims == 1 else eqx.nn.Conv2d
    layer = make(
        shape[0],
        weight.shape[0],
        weight.shape[2:],
        stride=stride,
        padding=_padding(node, dims, stride, where),
        dilation=_per_axis(node.dilation, dims, "dilation", where),
        groups=groups,
        use_bias=use_bias,
        key=jax.random.PRNGKey(0),
    )
    dtype = jnp.result_type(float)
    layer = eqx.tree_at(lambda m: m.weight, layer, jnp.asarray(weight, dtype))
    if use_bias:
        new_bias = jnp.asarray(bias.reshape(layer.bias.shape), dtype)
        layer = eqx.tree_at(lambda m: m.bias, layer, new_bias)
    out = jax.eval_shape(layer, jax.ShapeDtypeStruct(shape, dtype)).shape
    return layer, tuple(out)
