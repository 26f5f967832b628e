from ._model import ContinuousTime as ContinuousTime, ContinuousTimeState as ContinuousTimeState
