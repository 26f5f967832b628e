"""Figures for spiking networks and their training (matplotlib).

Imported only on request (`import eqslax.plot`); `import eqslax` never loads
matplotlib. Every function returns its `Figure`, draws into given `ax`/`axes` when
passed, and never calls `plt.show`. Without a display (and no backend chosen) the
non-interactive Agg backend is selected.
"""

from ._curves import similarity_curves as similarity_curves, training_curves as training_curves
from ._figure import save_figure as save_figure
from ._landscape import landscape as landscape
from ._raster import membrane as membrane, network_raster as network_raster, raster as raster
