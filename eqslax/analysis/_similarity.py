r"""How alike two gradients are: cosine similarity and norm ratio, per parameter, per
layer and over the whole model.

For flattened gradients $a, b$:

$$
\cos(a, b) = \frac{a \cdot b}{\max(\lVert a\rVert, \epsilon)\,\max(\lVert b\rVert, \epsilon)},
\qquad r(a, b) = \frac{\lVert a\rVert}{\max(\lVert b\rVert, \epsilon)}
$$

The floors make a zero gradient compare as $\cos = 0$ (and $r = 0$ when
$a = 0$) instead of NaN, and leave every other value exact.
"""

import beartype
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, Float, PyTree, jaxtyped

ROOT = "(model)"


def leaves_by_path(tree: PyTree) -> dict[str, Array]:
    """The array leaves of `tree` keyed by their path (`".layers[0].weight"`), in
    flattening order. Non-array leaves (static numbers, functions) are skipped."""
    leaves = jtu.tree_leaves_with_path(eqx.filter(tree, eqx.is_array))
    return {(jtu.keystr(path) or ROOT): leaf for path, leaf in leaves}


def layers_by_path(tree: PyTree) -> dict[str, str]:
    """`{parameter path: layer path}`. A parameter's layer is its path up to the first
    sequence index (`.layers[0].weight` -> `.layers[0]`: the top-level layer of a
    `Connect`); without an index, the module holding it (`.recurrent.weight` ->
    `.recurrent`)."""
    out = {}
    for path, _ in jtu.tree_leaves_with_path(eqx.filter(tree, eqx.is_array)):
        index = next((k for k, key in enumerate(path) if isinstance(key, jtu.SequenceKey)), None)
        prefix = path[: index + 1] if index is not None else path[:-1]
        out[jtu.keystr(path) or ROOT] = jtu.keystr(prefix) or ROOT
    return out


def check_matching(
    a: dict[str, Array], b: dict[str, Array], first: str, second: str, owner: str
) -> None:
    """Raise a ValueError naming every path present in only one of the trees (called
    `first` and `second` in the message) or shaped differently in the two."""
    only_a = [p for p in a if p not in b]
    only_b = [p for p in b if p not in a]
    shapes = [
        f"{p} {tuple(a[p].shape)} vs {tuple(b[p].shape)}"
        for p in a
        if p in b and a[p].shape != b[p].shape
    ]
    problems = []
    if only_a:
        problems.append(f"only in `{first}`: {', '.join(only_a)}")
    if only_b:
        problems.append(f"only in `{second}`: {', '.join(only_b)}")
    if shapes:
        problems.append(f"shapes differ: {'; '.join(shapes)}")
    if problems:
        raise ValueError(
            f"{owner}: `{first}` and `{second}` must have the same structure; "
            + "; ".join(problems)
            + "."
        )
    if not a:
        raise ValueError(f"{owner}: `{first}` and `{second}` hold no arrays to compare.")


class GradientComparison(eqx.Module):
    r"""Cosine similarity $\cos(a, b)$ and norm ratio $\lVert a\rVert /
    \lVert b\rVert$ of two gradients, over the whole model (`global_*`, all leaves
    concatenated), per layer (`layer_*`, ordered as `layer_names`) and per parameter
    (`parameter_*`, ordered as `parameter_names`).

    The global cosine is dominated by the largest-norm layer; read the per-layer values
    too. `str(comparison)` is a table; `to_dict()` gives plain floats.
    """

    parameter_names: tuple[str, ...] = eqx.field(static=True)
    parameter_layers: tuple[str, ...] = eqx.field(static=True)
    layer_names: tuple[str, ...] = eqx.field(static=True)
    parameter_cosine: Float[Array, " parameters"]
    parameter_ratio: Float[Array, " parameters"]
    layer_cosine: Float[Array, " layers"]
    layer_ratio: Float[Array, " layers"]
    global_cosine: Float[Array, ""]
    global_ratio: Float[Array, ""]

    def layer(self, name: str) -> tuple[float, float]:
        """`(cosine, ratio)` of one layer, e.g. `comparison.layer(".layers[0]")`."""
        if name not in self.layer_names:
            raise KeyError(f"GradientComparison: no layer {name!r}; layers: {self.layer_names}.")
        index = self.layer_names.index(name)
        return float(self.layer_cosine[index]), float(self.layer_ratio[index])

    def to_dict(self) -> dict[str, dict]:
        """`{"global": {"cosine", "ratio"}, "layers": {name: {...}}, "parameters": {...}}`."""

        def table(names, cosines, ratios):
            return {
                name: {"cosine": float(c), "ratio": float(r)}
                for name, c, r in zip(names, np.asarray(cosines), np.asarray(ratios))
            }

        return {
            "global": {"cosine": float(self.global_cosine), "ratio": float(self.global_ratio)},
            "layers": table(self.layer_names, self.layer_cosine, self.layer_ratio),
            "parameters": table(self.parameter_names, self.parameter_cosine, self.parameter_ratio),
        }

    def __str__(self) -> str:
        """A table: the global row, then each layer followed by its parameters."""
        rows = [("global", self.global_cosine, self.global_ratio)]
        for k, layer in enumerate(self.layer_names):
            rows.append((layer, self.layer_cosine[k], self.layer_ratio[k]))
            rows += [
                ("  " + name, self.parameter_cosine[j], self.parameter_ratio[j])
                for j, name in enumerate(self.parameter_names)
                if self.parameter_layers[j] == layer
            ]
        width = max(len(name) for name, _, _ in rows)
        lines = [f"{'':<{width}}  {'cosine':>9}  {'|a|/|b|':>10}"]
        lines += [f"{name:<{width}}  {float(c):>9.6f}  {float(r):>10.4g}" for name, c, r in rows]
        return "\n".join(lines)


@jaxtyped(typechecker=beartype.beartype)
def cosine_similarity(grads_a: PyTree, grads_b: PyTree, eps: float = 1e-12) -> GradientComparison:
    r"""Compare two gradients shaped alike (e.g. two rules' `grad` on one batch).

    Leaves are matched by their path in the tree, not by position, and grouped into
    layers by their top-level layer (`.layers[k]` of a `eqslax.Connect`). See
    the module docstring for $\cos$ and the ratio; `eps` is the norm floor.

    **Returns:** a `GradientComparison`. Works under `jax.jit`.

    **Raises:** `ValueError` naming the paths when the two trees differ.
    """
    if not eps > 0:
        raise ValueError(f"cosine_similarity: `eps` must be positive, got {eps}.")
    a, b = leaves_by_path(grads_a), leaves_by_path(grads_b)
    check_matching(a, b, "grads_a", "grads_b", "cosine_similarity")
    names = tuple(a)
    layer_of = layers_by_path(grads_a)
    layers: dict[str, list[int]] = {}
    for index, path in enumerate(names):
        layers.setdefault(layer_of[path], []).append(index)
    groups = tuple(tuple(g) for g in layers.values())
    parameter, layer, whole = _compare(
        tuple(a[p] for p in names), tuple(b[p] for p in names), groups, eps
    )
    return GradientComparison(
        parameter_names=names,
        parameter_layers=tuple(layer_of[p] for p in names),
        layer_names=tuple(layers),
        parameter_cosine=parameter[0],
        parameter_ratio=parameter[1],
        layer_cosine=layer[0],
        layer_ratio=layer[1],
        global_cosine=whole[0],
        global_ratio=whole[1],
    )


@eqx.filter_jit
def _compare(a: tuple, b: tuple, groups: tuple, eps: float):
    """`(cosines, ratios)` per leaf, per group of leaves and over all leaves. A group's
    inner products are sums of its leaves' ones, as if the leaves were concatenated."""
    sums = jnp.stack(
        [jnp.stack([jnp.vdot(x, y), jnp.vdot(x, x), jnp.vdot(y, y)]) for x, y in zip(a, b)]
    )

    def finish(s):
        norm_a, norm_b = jnp.sqrt(s[..., 1]), jnp.sqrt(s[..., 2])
        floor_b = jnp.maximum(norm_b, eps)
        return s[..., 0] / (jnp.maximum(norm_a, eps) * floor_b), norm_a / floor_b

    per_group = jnp.stack([jnp.sum(sums[jnp.asarray(g)], axis=0) for g in groups])
    return finish(sums), finish(per_group), finish(jnp.sum(sums, axis=0))


def _check_rule(rule, name: str, owner: str) -> None:
    if not callable(getattr(rule, "grad", None)):
        raise TypeError(
            f"{owner}: `{name}` must be a learning rule with a `grad(model, loss, xs, ys)` "
            f"method such as eqslax.BPTT(), got {type(rule).__name__}."
        )


def gradient_similarity(rule, reference, model, loss, xs, ys) -> GradientComparison:
    """Compare `rule.grad` with `reference.grad` (e.g. `eqslax.BPTT()`) at the
    same parameters on the same batch (`xs` (batch, time, *in), `ys` (batch,)).
    `grads_a` is the rule's gradient, so the ratio is ‖rule‖ / ‖reference‖."""
    _check_rule(rule, "rule", "gradient_similarity")
    _check_rule(reference, "reference", "gradient_similarity")
    return cosine_similarity(rule.grad(model, loss, xs, ys), reference.grad(model, loss, xs, ys))


class SimilarityRecorder:
    """Records, during training, how a rule's gradient compares with a reference rule's.

    Call it every step inside the training loop; it compares the two gradients on that
    step's batch at the current parameters when `step % every == 0` (or when `step`
    is in `steps`), and keeps the results:

    ```python
    recorder = SimilarityRecorder(eqslax.BPTT(), every=10)  # BPTT vs itself: 1
    for step, (xs, ys) in enumerate(batches):
        recorder(step, model, loss, xs, ys)
        model, state, _, _ = train_step(model, state, xs, ys)
    eqslax.plot.similarity_curves(recorder.steps, recorder.layer_curves())
    ```

    **Arguments:** `rule`; `reference` (default `eqslax.BPTT()`); `every` or an
    explicit collection of `steps`.
    """

    def __init__(self, rule, reference=None, *, every: int = 1, steps=None):
        if reference is None:
            from .._rules import BPTT

            reference = BPTT()
        _check_rule(rule, "rule", "SimilarityRecorder")
        _check_rule(reference, "reference", "SimilarityRecorder")
        if not isinstance(every, int) or isinstance(every, bool) or every <= 0:
            raise ValueError(f"SimilarityRecorder: `every` must be a positive int, got {every!r}.")
        self.rule, self.reference, self.every = rule, reference, every
        self.chosen = None if steps is None else frozenset(int(s) for s in steps)
        self.steps: list[int] = []
        self.comparisons: list[GradientComparison] = []

    def wants(self, step: int) -> bool:
        """Whether `step` is one of the recorded steps."""
        return step in self.chosen if self.chosen is not None else step % self.every == 0

    def __call__(self, step: int, model, loss, xs, ys) -> GradientComparison | None:
        """Compare at `step` if it is a recorded step; returns the comparison or `None`."""
        if not self.wants(step):
            return None
        # Each rule's `grad` is jitted already; the comparison itself is cheap.
        comparison = gradient_similarity(self.rule, self.reference, model, loss, xs, ys)
        self.steps.append(int(step))
        self.comparisons.append(comparison)
        return comparison

    def layer_curves(self) -> dict[str, np.ndarray]:
        """`{layer name: cosine at each recorded step}`, for plotting."""
        if not self.comparisons:
            return {}
        cosines = np.stack([np.asarray(c.layer_cosine) for c in self.comparisons])
        return {name: cosines[:, k] for k, name in enumerate(self.comparisons[0].layer_names)}

    def global_curve(self) -> np.ndarray:
        """The global cosine at each recorded step."""
        return np.asarray([float(c.global_cosine) for c in self.comparisons])
