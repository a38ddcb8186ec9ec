"""Neuron grids of a self-organising map: coordinates, adjacency and grid distances.

Neuron ``i`` sits at row ``i // cols`` and column ``i % cols``. Two topologies:

* ``"rect"``: neuron ``(r, c)`` at ``(x, y) = (c, r)``; neighbours are the 4 nearest
  (up, down, left, right) or, with ``connectivity=8``, also the 4 diagonal ones.
* ``"hex"``: odd rows are shifted half a step right and rows are ``sqrt(3) / 2`` apart,
  so every neuron is exactly 1 away from its (up to) 6 neighbours.
"""

from __future__ import annotations

import math

import torch

from graphforge.errors import ConfigError

TOPOLOGIES = ("rect", "hex")
CONNECTIVITIES = (4, 8)


def check_grid(rows: int, cols: int, topology: str = "rect", connectivity: int = 4) -> None:
    """Raise :class:`ConfigError` for an invalid grid.

    Args:
        rows (int): Rows of neurons (>= 1).
        cols (int): Columns of neurons (>= 1); the grid needs at least 2 neurons.
        topology (str, optional): ``"rect"`` or ``"hex"``. (default: ``"rect"``)
        connectivity (int, optional): 4 or 8 (rectangular grids). (default: ``4``)
    """
    for name, value in (("rows", rows), ("cols", cols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"som grid: {name} must be an integer >= 1, got {value!r}")
    if rows * cols < 2:
        raise ConfigError(f"som grid: a {rows}x{cols} grid has fewer than 2 neurons; use e.g. rows=10, cols=10")
    if topology not in TOPOLOGIES:
        raise ConfigError(f"som grid: topology must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
    if isinstance(connectivity, bool) or connectivity not in CONNECTIVITIES:
        raise ConfigError(f"som grid: connectivity must be 4 or 8, got {connectivity!r}")


def neuron_positions(rows: int, cols: int, topology: str = "rect") -> torch.Tensor:
    """Return the 2-D coordinates of the neurons.

    Args:
        rows (int): Rows of neurons.
        cols (int): Columns of neurons.
        topology (str, optional): ``"rect"`` or ``"hex"``. (default: ``"rect"``)

    Returns:
        ``[rows * cols, 2]`` float32 ``(x, y)`` coordinates (neighbours are 1 apart).
    """
    check_grid(rows, cols, topology)
    r = torch.arange(rows).repeat_interleave(cols).float()
    c = torch.arange(cols).repeat(rows).float()
    if topology == "hex":
        return torch.stack([c + 0.5 * (r % 2), r * (math.sqrt(3.0) / 2.0)], dim=1)
    return torch.stack([c, r], dim=1)


def _offsets(topology: str, connectivity: int, odd_row: bool) -> list[tuple[int, int]]:
    """(row, col) offsets of the neighbours "after" a neuron, so each pair appears once."""
    if topology == "hex":
        # Odd-row offset layout: an odd row's lower neighbours are at columns c and c + 1,
        # an even row's at c - 1 and c.
        return [(0, 1), (1, 0), (1, 1)] if odd_row else [(0, 1), (1, -1), (1, 0)]
    if connectivity == 8:
        return [(0, 1), (1, -1), (1, 0), (1, 1)]
    return [(0, 1), (1, 0)]


def grid_edges(rows: int, cols: int, topology: str = "rect", connectivity: int = 4) -> torch.Tensor:
    """Return the grid adjacency as a PyG ``edge_index`` with both directions of every edge.

    Args:
        rows (int): Rows of neurons.
        cols (int): Columns of neurons.
        topology (str, optional): ``"rect"`` or ``"hex"``. (default: ``"rect"``)
        connectivity (int, optional): 4 or 8 neighbours on rectangular grids (hexagonal
            grids always have 6). (default: ``4``)

    Returns:
        ``[2, 2 * U]`` int64 edge index, where ``U`` (undirected edges) is
        ``2rc - r - c`` for 4-neighbour, ``4rc - 3r - 3c + 2`` for 8-neighbour and
        ``3rc - 2r - 2c + 1`` for hexagonal ``r x c`` grids.
    """
    check_grid(rows, cols, topology, connectivity)
    src: list[int] = []
    dst: list[int] = []
    for r in range(rows):
        for dr, dc in _offsets(topology, connectivity, odd_row=bool(r % 2)):
            rr = r + dr
            if rr >= rows:
                continue
            for c in range(cols):
                cc = c + dc
                if 0 <= cc < cols:
                    src.append(r * cols + c)
                    dst.append(rr * cols + cc)
    a = torch.tensor(src, dtype=torch.long)
    b = torch.tensor(dst, dtype=torch.long)
    return torch.stack([torch.cat([a, b]), torch.cat([b, a])])


def grid_sq_distances(positions: torch.Tensor) -> torch.Tensor:
    """Return the squared Euclidean distances between neuron positions ``[M, M]``."""
    diff = positions[:, None, :] - positions[None, :, :]
    return (diff * diff).sum(-1)


def adjacent_matrix(rows: int, cols: int, topology: str = "rect") -> torch.Tensor:
    """Return ``[M, M]`` booleans: neurons adjacent on the grid, for the topographic error.

    Rectangular grids count the 8 surrounding neurons as adjacent (as MiniSom and
    Kohonen's SOM Toolbox do), hexagonal grids the 6 surrounding ones.
    """
    edges = grid_edges(rows, cols, topology, 8 if topology == "rect" else 4)
    m = rows * cols
    adj = torch.zeros(m, m, dtype=torch.bool)
    adj[edges[0], edges[1]] = True
    return adj
