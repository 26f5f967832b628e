"""eqslax: spiking neural networks in JAX and Equinox, for researching how they are trained."""

from ._connect import Connect as Connect, ConnectState as ConnectState
from ._neurons import (
    ALIF as ALIF,
    ALIFState as ALIFState,
    AbstractNeuron as AbstractNeuron,
    AbstractPopulation as AbstractPopulation,
    AbstractSpikingPopulation as AbstractSpikingPopulation,
    CuBaLIF as CuBaLIF,
    CuBaLIFState as CuBaLIFState,
    IF as IF,
    LI as LI,
    LIF as LIF,
    LIFState as LIFState,
    RLIF as RLIF,
    RLIFState as RLIFState,
)
from ._parameters import trainable as trainable, trainable_mask as trainable_mask
from ._simulate import Recording as Recording, record as record, simulate as simulate
from ._surrogate import (
    AbstractSurrogate as AbstractSurrogate,
    Arctan as Arctan,
    Boxcar as Boxcar,
    CustomSurrogate as CustomSurrogate,
    Exponential as Exponential,
    FastSigmoid as FastSigmoid,
    Gaussian as Gaussian,
    MultiGaussian as MultiGaussian,
    Sigmoid as Sigmoid,
    StraightThrough as StraightThrough,
    Triangle as Triangle,
)

__version__ = "0.1.0"
