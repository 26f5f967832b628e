"""Time-to-first-spike cross-entropy on a spiking output layer."""

import jax.numpy as jnp
import optax

from ._losses import AbstractLoss, check_label_range
from ._mask import check_mask_shape


def first_spike_times(outputs, mask=None):
    r"""$t_j = \min\{t + 1 - y_{t,j} : y_{t,j} > 0\}$ for each output unit $j$, in
    steps; $T$ (the sequence's real length) for a unit that never fires."""
    steps = jnp.arange(outputs.shape[0], dtype=outputs.dtype)[:, None]
    fired = outputs > 0
    length = outputs.shape[0] if mask is None else jnp.sum(mask)
    if mask is not None:
        fired = fired & mask[:, None]
    length = jnp.asarray(length, outputs.dtype)
    times = jnp.where(fired, steps + 1.0 - outputs, length)
    return jnp.minimum(jnp.min(times, axis=0), length)


class FirstSpikeTime(AbstractLoss):
    r"""Time-to-first-spike cross-entropy (Wunderlich & Pehle 2021; Göltz et al. 2021):
    the output unit of the true class should fire first.

    $$
    L = -\log \frac{e^{-t_c/\tau}}{\sum_j e^{-t_j/\tau}}, \qquad
    t_j = \min\{t + 1 - y_{t,j} : y_{t,j} > 0\}
    $$

    where $y_{t,j} \in (0, 1]$ marks a spike of unit $j$ in step $t$ at time
    $t + 1 - y_{t,j}$, as `ContinuousTime` writes it; a discrete spike $y = 1$ reads
    as a spike at the step's start. A unit that never fires counts as firing at the
    sequence's end $T$ (its real length with a `mask`), where it has no gradient.
    Takes one class label per sequence; the prediction is the unit that fires first.

    **Arguments:** `temperature` $\tau$ in steps (default 1).
    """

    temperature: float = 1.0

    def __check_init__(self):
        if not self.temperature > 0:
            raise ValueError(
                f"FirstSpikeTime: `temperature` must be positive, got {self.temperature!r}."
            )

    def __call__(self, outputs, label, layers=None, mask=None):
        label = jnp.asarray(label)
        if mask is not None:
            check_mask_shape(mask, outputs.shape[:1], "FirstSpikeTime")
        if label.ndim != 0:
            raise ValueError(
                "FirstSpikeTime: `label` must be one class label per sequence (a scalar), got "
                f"shape {label.shape}."
            )
        label = check_label_range(label, outputs.shape[-1], "FirstSpikeTime", "label")
        logits = -first_spike_times(outputs, mask) / self.temperature
        return optax.softmax_cross_entropy_with_integer_labels(logits, label)

    def predict(self, outputs, mask=None):
        return jnp.argmin(first_spike_times(outputs, mask))
