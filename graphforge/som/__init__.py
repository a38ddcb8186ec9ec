"""Kohonen self-organising maps in PyTorch: grids, training, quality measures and pictures.

See :class:`graphforge.som.SelfOrganizingMap`; the ``som`` and ``som_select`` converter
plugins (:mod:`graphforge.builtin.converters.som`) build on it.
"""

from graphforge.som.grid import grid_edges, grid_sq_distances, neuron_positions
from graphforge.som.som import SelfOrganizingMap, nearest_units, neighborhood

__all__ = ["SelfOrganizingMap", "grid_edges", "grid_sq_distances", "nearest_units", "neighborhood", "neuron_positions"]
