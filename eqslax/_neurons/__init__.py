from ._alif import ALIF as ALIF, ALIFState as ALIFState
from ._base import (
    AbstractNeuron as AbstractNeuron,
    AbstractPopulation as AbstractPopulation,
    AbstractSpikingPopulation as AbstractSpikingPopulation,
)
from ._cuba import CuBaLIF as CuBaLIF, CuBaLIFState as CuBaLIFState
from ._izhikevich import Izhikevich as Izhikevich, IzhikevichState as IzhikevichState
from ._lif import IF as IF, LI as LI, LIF as LIF, LIFState as LIFState
from ._ltc import LTC as LTC, LTCState as LTCState
from ._recurrent import Recurrent as Recurrent, RecurrentState as RecurrentState
from ._rlif import RLIF as RLIF, RLIFState as RLIFState
