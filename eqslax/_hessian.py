r"""Second derivatives through surrogate spikes in an order that is right under `scan`.

**The pitfall.** A surrogate spike is a `custom_jvp`: forward $H(x)$, derivative
$\sigma'(x)$, second derivative $\sigma''(x)$. When JAX runs reverse mode
through `lax.scan` it partially evaluates the scan body, and partial evaluation
replaces every `custom_jvp` call in the forward (residual) part by its primal
function, on the assumption that only a linear function is being built. Differentiating
that reverse pass again (`grad(grad(f))`, `jacfwd(grad(f))`, `jax.hessian(f)`)
then sees $H'(x) = 0$ on the recomputed spikes instead of $\sigma'(x)$, and
the Hessian differs from the one of the same loop written out in Python. Orders whose
inner derivative is forward mode (`jacfwd(jacfwd(f))`, `jacrev(jacfwd(f))`,
`grad` of a `jvp`) never partially evaluate the inner derivative and agree with the
unrolled loop. The helpers here use reverse-over-forward.
"""

from collections.abc import Callable, Sequence

import jax
from jaxtyping import PyTree

__all__ = ["hessian", "hvp"]


def hessian(fn: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    r"""The Hessian of a scalar `fn`, $H_{ij} = \partial_i \partial_j f(\theta)$.

    Computed as `jax.jacrev(jax.jacfwd(fn))` (forward mode inside), which is right
    through `lax.scan` and `eqslax.simulate` with surrogate spikes, unlike
    `jax.hessian` (reverse inside; see the module docstring).

    **Arguments:**

    - `fn`: a scalar function of arrays or PyTrees of arrays.
    - `argnums`: which positional arguments to differentiate, as in `jax.hessian`.

    **Returns:** a function with `fn`'s signature returning the Hessian, laid out as
    `jax.hessian` lays it out.
    """
    if not callable(fn):
        raise TypeError(f"eqslax.hessian: `fn` must be callable, got {type(fn).__name__}.")
    return jax.jacrev(jax.jacfwd(fn, argnums=argnums), argnums=argnums)


def hvp(fn: Callable, primals: PyTree, tangents: PyTree) -> PyTree:
    r"""The Hessian-vector product $H v = \nabla_\theta\,(\nabla_\theta f \cdot v)$.

    Reverse mode over a forward-mode directional derivative, so it is right through
    `lax.scan` with surrogate spikes (forward-over-reverse is not; see the module
    docstring). Costs about one forward and one backward pass.

    **Arguments:**

    - `fn`: a scalar function of one argument (an array or a PyTree of arrays).
    - `primals`: the point $\theta$.
    - `tangents`: the vector $v$, structured like `primals`.

    **Returns:** $Hv$, structured like `primals`.
    """
    if not callable(fn):
        raise TypeError(f"eqslax.hvp: `fn` must be callable, got {type(fn).__name__}.")
    if jax.tree_util.tree_structure(primals) != jax.tree_util.tree_structure(tangents):
        raise ValueError(
            "eqslax.hvp: `tangents` must have the structure of `primals`, got "
            f"{jax.tree_util.tree_structure(tangents)} and {jax.tree_util.tree_structure(primals)}."
        )
    return jax.grad(lambda p: jax.jvp(fn, (p,), (tangents,))[1])(primals)
