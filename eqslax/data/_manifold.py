"""The smooth random manifold of Zenke & Vogels (2021), in pure JAX."""

import math

import beartype
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, jaxtyped

# Samples are evaluated in chunks so that the (chunk, embedding, dim, frequencies)
# intermediate stays small even for rough manifolds (F = 1000).
_CHUNK = 256


def frequency_cutoff(alpha: float | int, prec: float | int = 1e-3, max_f_cutoff: int = 1000) -> int:
    r"""Number of Fourier terms $F$ of a random manifold with smoothness `alpha`.

    $$F = \min\left(\lceil \mathrm{prec}^{-1/\alpha} \rceil,\ \mathrm{max\_f\_cutoff}\right),$$

    the smallest $F$ with $F^{-\alpha} \le$ `prec`: the series is truncated where the
    spectral weight $(k+1)^{-\alpha}$ reaches `prec`.
    With the defaults: $\alpha = 0.5, 1, 1.5, 2, 3, 4 \mapsto F = 1000, 1000, 100, 32, 10, 6$.
    """
    _check_manifold_numbers(alpha, prec, max_f_cutoff)
    return int(min(math.ceil(prec ** (-1.0 / alpha)), max_f_cutoff))


@jaxtyped(typechecker=beartype.beartype)
class RandomManifold(eqx.Module):
    r"""A smooth random map $M: [0, 1)^D \to \mathbb{R}^E$ (Zenke & Vogels, 2021).

    With parameters $\theta \in [0,1)^{E \times D \times 3 \times F}$ (amplitude, frequency
    scale, phase) and power spectrum $s_k$, each embedding coordinate is a product over the
    manifold dimensions of a random Fourier series:

    $$g_{e,d}(x) = \sum_{k=0}^{F-1} \theta_{e,d,0,k}\, s_k
        \sin\bigl(2\pi (k\, x\, \theta_{e,d,1,k} + \theta_{e,d,2,k})\bigr),\qquad
      M_e(x) = \prod_{d=1}^{D} g_{e,d}(x_d).$$

    Build one with [`make_manifold`][]; a concrete, final class (do not subclass).

    Zenke, F. & Vogels, T. P. (2021). The remarkable robustness of surrogate gradient
    learning for instilling complex function in spiking neural networks. *Neural
    Computation* 33(4), 899-925.
    """

    params: Float[Array, "embedding dim 3 frequencies"]
    spectrum: Float[Array, " frequencies"]
    embedding_dim: int = eqx.field(static=True)
    manifold_dim: int = eqx.field(static=True)

    @jaxtyped(typechecker=beartype.beartype)
    def __call__(self, x: Float[Array, "samples dim"]) -> Float[Array, "samples embedding"]:
        """Evaluate the manifold at `x` of shape `(samples, manifold_dim)`, each in [0, 1)."""
        if x.shape[1] != self.manifold_dim:
            raise ValueError(
                f"`x` must have shape (samples, {self.manifold_dim}) to match "
                f"`manifold_dim={self.manifold_dim}`, got shape {x.shape}."
            )
        if x.shape[0] == 0:
            return jnp.zeros((0, self.embedding_dim), self.params.dtype)
        chunk = min(x.shape[0], _CHUNK)
        return jax.lax.map(self._evaluate_one, x, batch_size=chunk)

    def _evaluate_one(self, x: Float[Array, " dim"]) -> Float[Array, " embedding"]:
        amplitude = self.params[:, :, 0, :]
        frequency_scale = self.params[:, :, 1, :]
        phase = self.params[:, :, 2, :]
        k = jnp.arange(self.spectrum.shape[0], dtype=self.params.dtype)
        angle = 2 * jnp.pi * (k * x[None, :, None] * frequency_scale + phase)
        g = jnp.sum(amplitude * self.spectrum * jnp.sin(angle), axis=-1)
        return jnp.prod(g, axis=-1)


@jaxtyped(typechecker=beartype.beartype)
def make_manifold(
    key: PRNGKeyArray,
    *,
    embedding_dim: int,
    manifold_dim: int,
    alpha: float | int = 2.0,
    prec: float | int = 1e-3,
    max_f_cutoff: int = 1000,
    use_bias: bool = False,
    spectrum: str = "jax",
) -> RandomManifold:
    r"""Draw a [`RandomManifold`][] (Zenke & Vogels, 2021).

    $\theta \sim U[0,1)^{E \times D \times 3 \times F}$ with $F$ from
    [`frequency_cutoff`][]. Without a bias the constant term is removed,
    $\theta_{e,d,0,0} = 0$. The power spectrum, for $k = 0..F-1$, is

    - `spectrum="jax"` (the reference JAX/Torch backends, used by Slax):
      $s_k = 1/((k+1)^\alpha + 1)$;
    - `spectrum="numpy"` (the reference NumPy class): $s_k = (k+1)^{-\alpha}$.

    **Arguments:**

    - `key`: PRNG key for $\theta$.
    - `embedding_dim`: $E$, the output dimension (number of units).
    - `manifold_dim`: $D$, the intrinsic (latent) dimension.
    - `alpha`: spectral fall-off; larger is smoother and easier. Default 2.
    - `prec`: smallest spectral weight kept. Default `1e-3`.
    - `max_f_cutoff`: upper bound on $F$. Default 1000.
    - `use_bias`: keep the constant $k = 0$ amplitude. Default `False`.
    - `spectrum`: `"jax"` (default) or `"numpy"`, see above.
    """
    if embedding_dim < 1:
        raise ValueError(f"`embedding_dim` must be an integer >= 1, got {embedding_dim}.")
    if manifold_dim < 1:
        raise ValueError(f"`manifold_dim` must be an integer >= 1, got {manifold_dim}.")
    if spectrum not in ("jax", "numpy"):
        raise ValueError(f"`spectrum` must be 'jax' or 'numpy', got {spectrum!r}.")
    n_frequencies = frequency_cutoff(alpha, prec, max_f_cutoff)
    params = _uniform(key, (embedding_dim, manifold_dim, 3, n_frequencies))
    if not use_bias:
        params = params.at[:, :, 0, 0].set(0.0)
    k1 = jnp.arange(1, n_frequencies + 1, dtype=params.dtype)
    if spectrum == "jax":
        weights = 1.0 / (k1**alpha + 1.0)
    else:
        weights = k1 ** (-alpha)
    return RandomManifold(
        params=params,
        spectrum=weights,
        embedding_dim=embedding_dim,
        manifold_dim=manifold_dim,
    )


def _uniform(key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
    """`U[0, 1)` samples drawn flat, then reshaped.

    With JAX's partitionable threefry, XLA:CPU takes over a second to compile a
    multi-dimensional draw but a fraction of that for a flat one.
    """
    return jax.random.uniform(key, (math.prod(shape),)).reshape(shape)


def _check_manifold_numbers(alpha: float | int, prec: float | int, max_f_cutoff: int) -> None:
    if not alpha > 0:
        raise ValueError(f"`alpha` must be > 0 (spectral fall-off), got {alpha}.")
    if not 0 < prec < 1:
        raise ValueError(f"`prec` must lie in (0, 1), got {prec}.")
    if max_f_cutoff < 1:
        raise ValueError(f"`max_f_cutoff` must be an integer >= 1, got {max_f_cutoff}.")
