from ._base import AbstractLearningRule as AbstractLearningRule, Aux as Aux
from ._bptt import BPTT as BPTT, TruncatedBPTT as TruncatedBPTT
