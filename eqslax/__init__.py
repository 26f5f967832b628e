"""eqslax: spiking neural networks in JAX and Equinox, for researching how they are trained."""

from . import (
    compare as compare,  # noqa: E402 (callable: eqslax.compare(...))
    distributed as distributed,
    layerwise as layerwise,
)
from ._checkpoint import (
    Checkpoint as Checkpoint,
    CheckpointError as CheckpointError,
    atomic_write as atomic_write,
    load_checkpoint as load_checkpoint,
    save_checkpoint as save_checkpoint,
)
from ._connect import Connect as Connect, ConnectState as ConnectState
from ._continuous import (
    ContinuousTime as ContinuousTime,
    ContinuousTimeState as ContinuousTimeState,
)
from ._dcls import (
    DCLSDelay as DCLSDelay,
    anneal_delays as anneal_delays,
    delay_sigma as delay_sigma,
    round_delays as round_delays,
)
from ._delay import AbstractDelay as AbstractDelay, Delay as Delay, DelayState as DelayState
from ._first_spike import FirstSpikeTime as FirstSpikeTime
from ._fit import evaluate as evaluate, fit as fit
from ._flatten import Flatten as Flatten
from ._hessian import hessian as hessian, hvp as hvp
from ._losses import (
    AbstractLoss as AbstractLoss,
    Accumulated as Accumulated,
    CountMSE as CountMSE,
    PerStep as PerStep,
    RateRegularised as RateRegularised,
    Targets as Targets,
    accuracy as accuracy,
    spiking_layers as spiking_layers,
)
from ._metrics import task_metrics as task_metrics
from ._neurons import (
    ALIF as ALIF,
    IF as IF,
    LI as LI,
    LIF as LIF,
    LTC as LTC,
    RLIF as RLIF,
    AbstractNeuron as AbstractNeuron,
    AbstractPopulation as AbstractPopulation,
    AbstractSpikingPopulation as AbstractSpikingPopulation,
    ALIFState as ALIFState,
    CuBaLIF as CuBaLIF,
    CuBaLIFState as CuBaLIFState,
    Izhikevich as Izhikevich,
    IzhikevichState as IzhikevichState,
    LIFState as LIFState,
    LTCState as LTCState,
    Recurrent as Recurrent,
    RecurrentState as RecurrentState,
    RLIFState as RLIFState,
)
from ._parameters import trainable as trainable, trainable_mask as trainable_mask
from ._rules import (
    BPTT as BPTT,
    FPTT as FPTT,
    OSTL as OSTL,
    OSTTP as OSTTP,
    OTPE as OTPE,
    OTTT as OTTT,
    RTRL as RTRL,
    STDP as STDP,
    UORO as UORO,
    AbstractLearningRule as AbstractLearningRule,
    AbstractOnlineRule as AbstractOnlineRule,
    ApproxOTPE as ApproxOTPE,
    ApproxOTPETraces as ApproxOTPETraces,
    Aux as Aux,
    EProp as EProp,
    EPropState as EPropState,
    EPropTraces as EPropTraces,
    EventProp as EventProp,
    FPTTState as FPTTState,
    FPTTStep as FPTTStep,
    OSTLTraces as OSTLTraces,
    OTPETraces as OTPETraces,
    OTTTTraces as OTTTTraces,
    RewardSTDP as RewardSTDP,
    RewardSTDPState as RewardSTDPState,
    RTRLTraces as RTRLTraces,
    TruncatedBPTT as TruncatedBPTT,
    UOROTraces as UOROTraces,
    train_fptt as train_fptt,
)
from ._simulate import Recording as Recording, record as record, simulate as simulate
from ._step import AbstractTrainStep as AbstractTrainStep, TrainState as TrainState
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
from ._train import (
    OfflineStep as OfflineStep,
    train_offline as train_offline,
)
from ._train_online import (
    OnlineStep as OnlineStep,
    train_online as train_online,
    train_online_deferred as train_online_deferred,
)
from ._zoo import feedforward as feedforward
from .analysis import gradient_similarity as compare_grads  # noqa: F401 (Slax name)

__version__ = "0.1.0"
