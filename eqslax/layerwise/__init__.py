r"""The toolkit for writing layer-local learning rules.

OSTL, OTTT, OTPE, ApproxOTPE and e-prop are all [`eqslax.layerwise.AbstractLayerwiseRule`][]s:
the base class runs the forward sweep through a [`eqslax.layerwise.Layers`][] view,
takes the learning signal at the top and walks the layers down, calling three per-layer
hooks (`advance`, `gradient`, `passback`). A new rule is those hooks plus a trace type,
built from the pieces below:

- [`eqslax.layerwise.Layers`][], [`eqslax.layerwise.Layer`][]: each layer's affine map,
  recurrent weight, neuron, and where its state and gradients live.
- [`eqslax.layerwise.LayerStep`][], [`eqslax.layerwise.Local`][],
  [`eqslax.layerwise.neuron_step`][]: what the forward sweep saw, with per-unit local
  derivatives from forward-mode JVPs.
- [`eqslax.layerwise.factored_gradient`][], [`eqslax.layerwise.LayerGrads`][],
  [`eqslax.layerwise.passback`][]: a layer's gradient from a postsynaptic factor and
  presynaptic traces, and the spatial signal $W^\top(g \odot \partial y/\partial I)$.
  Weight gradients stay factored ([`eqslax.layerwise.Outer`][]) until the batched step
  sums them over the batch, in one matrix product per weight for vector traces.
- OSTL's exact per-layer eligibility ([`eqslax.layerwise.init_eligibility`][],
  [`eqslax.layerwise.advance_eligibility`][], [`eqslax.layerwise.sensitivity_gradient`][])
  and OTTT's presynaptic traces ([`eqslax.layerwise.init_presynaptic`][],
  [`eqslax.layerwise.advance_presynaptic`][]).
"""

from .._rules._layers import Layer as Layer, Layers as Layers
from .._rules._layerwise import (
    LayerGrads as LayerGrads,
    LayerStep as LayerStep,
    Local as Local,
    factored_gradient as factored_gradient,
    neuron_step as neuron_step,
    passback as passback,
)
from .._rules._layerwise_rule import (
    AbstractLayerwiseRule as AbstractLayerwiseRule,
    forward as forward,
)
from .._rules._ostl import (
    LayerEligibility as LayerEligibility,
    LayerSensitivity as LayerSensitivity,
    advance_eligibility as advance_eligibility,
    init_eligibility as init_eligibility,
    sensitivity_gradient as sensitivity_gradient,
)
from .._rules._ottt import (
    PresynapticTrace as PresynapticTrace,
    advance_presynaptic as advance_presynaptic,
    init_presynaptic as init_presynaptic,
)
from .._rules._outer import Outer as Outer, dense as dense
