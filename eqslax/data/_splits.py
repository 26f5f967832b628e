"""In-memory train and test arrays: the smallest dataset `fit` and `eqslax.compare` take."""

import dataclasses

import jax


@dataclasses.dataclass(frozen=True)
class Splits:
    """A dataset as four arrays, batch-major.

    **Fields:**

    - `train_x`, `test_x`: inputs `(batch, time, *in)`.
    - `train_y`, `test_y`: targets as the loss takes them: class labels `(batch,)` or
      `(batch, time)`, or real values `(batch, time, *out)`.
    """

    train_x: jax.Array
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array
