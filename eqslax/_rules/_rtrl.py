"""Real-time recurrent learning (Williams & Zipser 1989): exact, forward in time."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, PyTree

from .._connect import ConnectState
from .._simulate import initial_state
from ._online import AbstractOnlineRule, split_trainable


def flat_step(model, state: PyTree, x: Array):
    """One step as a function of flat vectors, `f(h, p) -> (h_new, y)`, with the flat
    state and trainable parameters and their unravelling functions: what the
    influence-matrix rules (RTRL, SnAp, UORO) differentiate."""
    params, static = split_trainable(model)
    flat_p, unravel_p = ravel_pytree(params)
    flat_h, unravel_h = ravel_pytree(state)

    def f(h, p):
        new_state, y = eqx.combine(unravel_p(p), static)(unravel_h(h), x)
        return ravel_pytree(new_state)[0], y

    return f, flat_h, flat_p, unravel_h, unravel_p


class RTRLTraces(eqx.Module):
    """The influence matrix $M_t = dh_t/d\\theta$ (state size x parameter count)."""

    influence: Float[Array, "state params"]


class RTRL(AbstractOnlineRule):
    r"""Exact RTRL over a whole model, any architecture the core can build.

    With the model's state $h$ and trainable parameters $\theta$ flattened,
    one step $(h_t, y_t) = f(h_{t-1}, x_t; \theta)$ and

    $$
    M_t = \frac{\partial f_h}{\partial h} M_{t-1} + \frac{\partial f_h}{\partial\theta},
    \qquad
    \nabla_\theta \ell_t = \frac{\partial \ell}{\partial y_t}\Big(
        \frac{\partial f_y}{\partial h} M_{t-1} + \frac{\partial f_y}{\partial\theta}\Big)
    $$

    Both brackets are forward-mode JVPs of the step along the tangents
    $(M_{t-1} e_p, e_p)$, one per parameter $p$, evaluated in chunks of
    `chunk_size` columns to bound memory. The influence starts at
    $M_0 = \partial h_0/\partial\theta$ (nonzero when the initial state depends on a
    trainable parameter), so the gradient through $h_0$ is kept as in BPTT.
    Memory $O(SP)$ per sample, independent of the sequence length; compute
    $O(P)$ JVPs per step. With a per-step loss and no mid-sequence updates,
    `grad` equals BPTT's exactly.

    `diagonal=True` is the SnAp-1 / diagonal RTRL approximation (Menick et al. 2021):
    the state Jacobian $D_t = \partial f_h/\partial h$ is masked to blocks, one
    per unit $(l, i)$ of each layer $l$ (the entries coupling the state
    variables of unit $i$ of layer $l$ with each other, e.g. ALIF's
    $v_i$ and $a_i$, and with $y_{t-1,i}$ carried by a
    `Recurrent` layer or a `cat` self-edge, so $W_{rec,ii}$ is kept):

    $$
    M_t = (D_t \odot B) M_{t-1} + \frac{\partial f_h}{\partial\theta}, \qquad
    B_{ab} = [\mathrm{unit}(a) = \mathrm{unit}(b)]
    $$

    (see `unit_blocks`). The output sensitivity
    $\partial f_y/\partial h\, M_{t-1} + \partial f_y/\partial\theta$ stays
    exact, so the approximation enters only through the carried influence. $D_t$
    is built explicitly, $S$ more JVPs per step; the influence is kept dense (no
    memory is saved). On feed-forward layers of elementwise neurons $D_t$ is
    already block diagonal and the rule equals full RTRL.

    `snap=n` is SnAp-$n$ (Menick et al. 2021): the influence itself is restricted to
    the entries a parameter can reach in $n$ steps,

    $$
    M_t = S_n \odot \Big(D_t M_{t-1} + \frac{\partial f_h}{\partial\theta}\Big),
    \qquad S_1 = [I \neq 0],\quad S_{k+1} = S_k \lor [\,[D \neq 0]\, S_k \neq 0\,]
    $$

    with $I = \partial f_h/\partial\theta$. The patterns of $D$ and $I$ are the
    model's structure, found when the step is traced: NaN tangents are pushed through
    one step of a copy of the model with every array (parameters and constants), the
    state and the input drawn at random (four draws), and every entry they reach
    counts (NaN survives multiplication by zero, so a dependence is missed only if a
    `where` branch that carries it is never taken). Once
    $n$ reaches the length of the longest dependence chain, $S_n$ holds every entry
    exact RTRL can make nonzero and the rule is RTRL. For one layer whose parameters
    each feed one unit, SnAp-1 equals `diagonal=True`; across layers SnAp-1 keeps a
    lower layer's parameters' immediate influence on the layers above it. The influence
    is kept dense and masked (the memory of RTRL, not of a sparse SnAp).
    """

    chunk_size: int = eqx.field(static=True, default=512)
    diagonal: bool = eqx.field(static=True, default=False)
    snap: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.snap is not None and (
            isinstance(self.snap, bool) or not isinstance(self.snap, int) or self.snap < 1
        ):
            raise ValueError(f"RTRL: `snap` must be a positive integer or None, got {self.snap!r}.")
        if self.snap is not None and self.diagonal:
            raise ValueError(
                "RTRL: give `diagonal=True` (a masked state Jacobian) or `snap=n` (a masked "
                "influence), not both."
            )

    def influence_pattern(self, model, x: Array) -> Bool[np.ndarray, "state params"]:
        """$S_n$ for `model` on inputs shaped like `x` (one step's input): which entries of
        the flattened influence `RTRL(snap=n)` keeps (rows: the state as
        `jax.flatten_util.ravel_pytree` orders it; columns: the trainable parameters)."""
        if self.snap is None:
            raise ValueError("RTRL.influence_pattern: needs `snap=n`, got snap=None.")
        return snap_pattern(model, initial_state(model, x), x, self.snap)

    def init_traces(self, model, state):
        r"""$M_0 = \partial h_0 / \partial\theta$: zero unless the initial state
        depends on a parameter (`Izhikevich` starts at $v_0 = c, u_0 = bc$)."""
        params, static = split_trainable(model)
        flat_p, unravel_p = ravel_pytree(params)
        flat_state = ravel_pytree(state)[0]

        def initial(p):
            h0 = eqx.combine(unravel_p(p), static).init_state()
            # cast to the carried dtypes, as `initial_state` does
            h0 = jax.tree_util.tree_map(lambda h, s: jnp.asarray(h, s.dtype), h0, state)
            return ravel_pytree(h0)[0]

        if not flat_p.size:
            return RTRLTraces(jnp.zeros((flat_state.size, 0), flat_state.dtype))
        return RTRLTraces(jax.jacfwd(initial)(flat_p).astype(flat_state.dtype))

    def step(self, model, state, traces, x, label, loss):
        f, flat_h, flat_p, unravel_h, unravel_p = flat_step(model, state, x)
        (h_new, y), linear = jax.linearize(f, flat_h, flat_p)
        influence, dy = self._propagate(linear, traces.influence, flat_p)
        if self.diagonal:
            influence = influence - self._off_block(linear, state, flat_h, flat_p) @ (
                traces.influence
            )
        if self.snap is not None:
            influence = jnp.where(snap_pattern(model, state, x, self.snap), influence, 0.0)
        value, g_y = jax.value_and_grad(lambda y: loss.step(y, label))(y)
        grad = jnp.tensordot(g_y, dy, axes=g_y.ndim)
        return unravel_h(h_new), RTRLTraces(influence), unravel_p(grad), y, value

    def _off_block(self, linear, state, flat_h, flat_p) -> Float[Array, "state state"]:
        """$D_t \\odot (1 - B)$: the state Jacobian's entries between units."""
        zero_p = jnp.zeros_like(flat_p)
        eye = jnp.eye(flat_h.size, dtype=flat_h.dtype)
        columns, _ = jax.vmap(lambda e: linear(e, zero_p))(eye)  # row s = D e_s
        return jnp.where(jnp.asarray(unit_blocks(state)), 0.0, columns.T)

    def _propagate(self, linear, influence, flat_p):
        """Columns `p` of `[M_t; dy/dθ]` = `linear(M_{t-1} e_p, e_p)`, in chunks."""
        n = flat_p.size
        size = min(self.chunk_size, n)
        chunks = -(-n // size)
        index = jnp.arange(chunks * size).reshape(chunks, size)  # padded with p >= n

        def column(p):
            e = jax.nn.one_hot(p, n, dtype=flat_p.dtype)  # zero for padding
            m = jnp.where(p < n, influence[:, jnp.minimum(p, n - 1)], 0.0)
            return linear(m, e)

        dh, dy = jax.lax.map(jax.vmap(column), index)
        dh = dh.reshape(-1, *dh.shape[2:])[:n]
        dy = dy.reshape(-1, *dy.shape[2:])[:n]
        return jnp.moveaxis(dh, 0, -1), jnp.moveaxis(dy, 0, -1)


def _random_like(tree: PyTree, rng: np.random.Generator) -> PyTree:
    """Concrete random arrays shaped like the arrays of `tree` (tracers included):
    normal floats, and integers and booleans drawn from {0, 1}."""

    def draw(leaf):
        if not eqx.is_array(leaf):
            return leaf
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.asarray(rng.normal(size=leaf.shape), leaf.dtype)
        return jnp.asarray(rng.integers(0, 2, size=leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map(draw, tree)


def _reached(params, static, state, x) -> tuple[np.ndarray, np.ndarray]:
    """Which entries of $D$ (state x state) and $I$ (state x params) one step at this
    point lets a NaN tangent reach."""
    flat_p, unravel_p = ravel_pytree(params)
    flat_h, unravel_h = ravel_pytree(state)

    def f(h, p):
        new, _ = eqx.combine(unravel_p(p), static)(unravel_h(h), x)
        return ravel_pytree(new)[0]

    _, linear = jax.linearize(f, flat_h, flat_p)

    def nan_basis(v):
        return jnp.where(jnp.eye(v.size, dtype=bool), jnp.nan, 0.0).astype(v.dtype)

    zero_h, zero_p = jnp.zeros_like(flat_h), jnp.zeros_like(flat_p)
    d = jax.vmap(lambda e: linear(e, zero_p))(nan_basis(flat_h))  # row b: D e_b
    i = jax.vmap(lambda e: linear(zero_h, e))(nan_basis(flat_p))  # row p: I e_p
    return np.isnan(np.asarray(d)).T, np.isnan(np.asarray(i)).T


def snap_pattern(model, state: PyTree, x: Array, n: int) -> Bool[np.ndarray, "state params"]:
    r"""$S_n$ of `RTRL(snap=n)`: which influence entries $(h_a, \theta_p)$ a parameter
    can reach within $n$ steps of `model`, a NumPy constant computed at trace time."""
    params, static = split_trainable(model)
    rng = np.random.default_rng(0)
    with jax.ensure_compile_time_eval():
        draws = [
            _reached(
                _random_like(params, rng),
                _random_like(static, rng),
                _random_like(state, rng),
                _random_like(x, rng),
            )
            for _ in range(4)
        ]
    reach = np.logical_or.reduce([d for d, _ in draws]).astype(np.int64)
    pattern = np.logical_or.reduce([i for _, i in draws])
    for _ in range(n - 1):
        pattern = pattern | ((reach @ pattern.astype(np.int64)) > 0)
    return pattern


def _unit_keys(tree: PyTree, layer: tuple[int, ...], keys: list) -> None:
    leaves = jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, ConnectState))
    for leaf in leaves:
        if isinstance(leaf, ConnectState):
            for index, sub in enumerate(leaf.layers):
                _unit_keys(sub, layer + (index,), keys)
            for index in sorted(leaf.delayed):
                _unit_keys(leaf.delayed[index], layer + (index,), keys)
        else:
            keys.extend((layer, unit) for unit in range(math.prod(jnp.shape(leaf))))


def unit_blocks(state: PyTree) -> Bool[np.ndarray, "state state"]:
    r"""The block mask $B$ of `RTRL(diagonal=True)` over the flattened state.

    Entry $(a, b)$ is `True` when state entries $a$ and $b$ belong to
    the same unit: the same layer (a `Connect` layer, nested ones by their path;
    a recurrent edge's carried source counts as its source layer; a model that is not a
    `Connect` is one layer) and the same flat position within their state leaves.
    """
    keys: list = []
    _unit_keys(state, (), keys)
    size = ravel_pytree(state)[0].size
    if len(keys) != size:
        raise ValueError(
            f"RTRL(diagonal=True): the state has {size} entries but {len(keys)} were "
            "assigned to units; a state leaf is not an array."
        )
    ids = {key: n for n, key in enumerate(dict.fromkeys(keys))}
    labels = np.array([ids[key] for key in keys])
    return labels[:, None] == labels[None, :]
