"""OSTTP (Ortner & Pes 2023): OSTL's eligibility with a direct random target projection."""

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._layers import Layers
from ._layerwise_rule import AbstractLayerwiseRule
from ._ostl import OSTLTraces, advance_eligibility, init_eligibility, sensitivity_gradient


def target_vector(target: Array, output: Array) -> Float[Array, " out"]:
    r"""$y^*_t$ as a vector: the one-hot code of an integer class label (as many classes as
    the model has outputs), or a real per-step target (`PerStep(target="value")`)
    flattened."""
    target = jnp.asarray(target)
    if target.ndim == 0 and jnp.issubdtype(target.dtype, jnp.integer):
        return jax.nn.one_hot(target, output.size, dtype=output.dtype)
    return target.reshape(-1).astype(output.dtype)


def _units(layers: Layers, index: int) -> int:
    """The number of outputs of layer `index` (all positions of a convolutional one)."""
    return math.prod(layers.model.shapes[layers[index].position + 1])


class OSTTP(AbstractLayerwiseRule):
    r"""OSTTP: online spatio-temporal learning with target projection (Ortner & Pes 2023).

    OSTL's exact per-layer eligibility ([`eqslax.OSTL`][]) for the temporal part, and for
    the spatial part the learning signal of every layer below the top replaced by a fixed
    random projection of the target (direct random target projection, DRTP; Frenkel et
    al. 2021). With $y^*_t$ the one-hot target (or the per-step target of a value loss)
    and $B^l$ a fixed `(n_l, C)` matrix,

    $$g^{L}_t = \frac{\partial\ell_t}{\partial y^{L}_t}, \qquad
      g^{l}_t = -B^l y^*_t \quad (l < L), \qquad
      \nabla_{\theta^l}\ell_t \approx g^l_t \frac{dy^l_t}{d\theta^l},$$

    with $dy^l_t/d\theta^l$ from OSTL's recursion
    $E_t = J_t E_{t-1} + \partial h_t/\partial\theta$. $-y^*_t$ is the gradient of the
    linear loss $-\langle y^*_t, y_t\rangle$; DRTP uses it as a proxy for the output error,
    whose sign it gives for the target class ($\pi_c - 1 \le 0$). No layer's signal
    depends on the layers above it, so all layers can update at once. The output layer
    keeps OSTL's exact signal, and its gradient equals OSTL's (and BPTT's, as OSTL's last
    layer does).

    **Relation to OSTL.** With one layer there is no layer below the top: $B$ is never
    used and OSTTP *is* OSTL (equal to BPTT). With one hidden layer under the output
    layer $L$, OSTL's hidden signal is $W^{L\top}(g^L_t \odot \partial y^L_t/\partial
    I^L_t)$; with `projection=(W_L.T,)` OSTTP equals OSTL exactly when that signal is
    $-W^{L\top} y^*_t$, i.e. when the loss's gradient is $-y^*_t$ (the linear loss above)
    and $\partial y^L/\partial I^L = 1$ (an `LI` readout). Under any other loss they differ
    by the prediction that the output error contains and the target alone does not.
    Deeper, OSTL's signal to layer $l$ carries the surrogate derivatives of every layer
    above it, which no fixed matrix reproduces.

    **Centred targets** (`centered=True`, an eqslax option, not in the paper). The part of
    $B^l y^*$ shared by all classes, $B^l \mathbf 1 / C$, pushes every hidden unit the same
    way whatever the class, and the signal never vanishes with the error; when the classes
    drive the same inputs (T-Randman: every unit fires once in every sample) it moves the
    hidden layer steadily away while the readout follows. Projecting
    $y^*_t - \bar y^*_t$ instead keeps only the class-contrastive part. On T-Randman
    (20-100-10, 3 seeds, 10 epochs) it took OSTTP's test accuracy from 0.14 (chance is
    0.1) to 0.43, against OSTL's 0.97 (Results page).

    It handles the layers OSTL handles (feed-forward, `Recurrent`, convolutional: a
    convolutional layer's $B^l$ has one row per unit and position) and refuses the others,
    naming the layer. Memory is OSTL's plus the $B^l$, shared by all samples.
    """

    traces_type: ClassVar[type] = OSTLTraces

    key: PRNGKeyArray | None
    projection: tuple[Float[Array, "_ out"], ...] | None
    centered: bool = eqx.field(static=True)

    def __init__(
        self,
        *,
        key: PRNGKeyArray | None = None,
        projection: tuple[Float[Array, "_ out"], ...] | None = None,
        centered: bool = False,
    ):
        """**Arguments:**

        - `key`: PRNG key for the random projections,
          $B^l_{ij} \\sim \\mathcal N(0, 1/C)$ drawn from `jax.random.fold_in(key, l)`.
        - `projection`: the $B^l$ themselves instead, one `(n_l, C)` array for each
          layer below the top, from the input up.

        Give exactly one of them.

        - `centered`: project the target with its mean over the outputs removed,
          $y^*_t - \\bar y^*_t$ ($y^* - 1/C$ for a one-hot target), which is $B^l$ with
          its row means removed (default `False`, the paper's rule; see above).
        """
        if (key is None) == (projection is None):
            raise ValueError(
                "OSTTP: give exactly one of `key` (to draw the random target projections) "
                "and `projection` (the matrices themselves); got "
                f"{'both' if key is not None else 'neither'}."
            )
        self.key = key
        self.projection = None if projection is None else tuple(map(jnp.asarray, projection))
        self.centered = bool(centered)

    def projections(self, layers: Layers, n_out: int, dtype) -> tuple[Array, ...]:
        """$B^l$ for each layer below the top of `layers`, for `n_out` targets."""
        shapes = [(_units(layers, index), n_out) for index in range(len(layers) - 1)]
        if self.projection is None:
            return tuple(
                jax.random.normal(jax.random.fold_in(self.key, index), shape, dtype)
                / math.sqrt(n_out)
                for index, shape in enumerate(shapes)
            )
        given = [tuple(b.shape) for b in self.projection]
        if given != shapes:
            raise ValueError(
                f"OSTTP: `projection` must hold one (n_l, C) matrix per layer below the top, "
                f"shapes {shapes} for this model; got {given}."
            )
        return tuple(b.astype(dtype) for b in self.projection)

    def init_traces(self, model, state):
        traces = AbstractLayerwiseRule.init_traces(self, model, state)
        if self.projection is not None:  # check the shapes before the first step
            self.projections(self.view(model), math.prod(model.out_shape), jnp.float32)
        return traces

    def target_signal(self, layers, index, target, output):
        target = target_vector(target, output)
        if self.centered:
            target = target - jnp.mean(target)
        return -self.projections(layers, target.size, output.dtype)[index] @ target

    def init_layer(self, layers, index, state, dtype):
        return init_eligibility(layers[index], state, dtype)

    def advance(self, layers, index, trace, step):
        return advance_eligibility(layers[index], trace, step)

    def gradient(self, layers, index, estimate, step, signal):
        return sensitivity_gradient(layers[index], estimate, signal)
