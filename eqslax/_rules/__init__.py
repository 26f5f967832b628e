from ._base import AbstractLearningRule as AbstractLearningRule, Aux as Aux
from ._bptt import BPTT as BPTT, TruncatedBPTT as TruncatedBPTT
from ._eprop import EProp as EProp, EPropState as EPropState, EPropTraces as EPropTraces
from ._eventprop import EventProp as EventProp
from ._fptt import (
    FPTT as FPTT,
    FPTTState as FPTTState,
    FPTTStep as FPTTStep,
    train_fptt as train_fptt,
)
from ._online import AbstractOnlineRule as AbstractOnlineRule
from ._ostl import OSTL as OSTL, OSTLTraces as OSTLTraces
from ._osttp import OSTTP as OSTTP
from ._otpe import (
    OTPE as OTPE,
    ApproxOTPE as ApproxOTPE,
    ApproxOTPETraces as ApproxOTPETraces,
    OTPETraces as OTPETraces,
)
from ._ottt import OTTT as OTTT, OTTTTraces as OTTTTraces
from ._rtrl import RTRL as RTRL, RTRLTraces as RTRLTraces
from ._stdp import STDP as STDP, RewardSTDP as RewardSTDP, RewardSTDPState as RewardSTDPState
from ._uoro import UORO as UORO, UOROTraces as UOROTraces
