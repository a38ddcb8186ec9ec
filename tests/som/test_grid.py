"""Neuron grids: coordinates, adjacency edge counts and bad grids."""

import math

import pytest
import torch

from graphforge.errors import ConfigError
from graphforge.som.grid import (
    adjacent_matrix,
    grid_edges,
    grid_sq_distances,
    neuron_positions,
)

SIZES = [(1, 2), (2, 1), (2, 2), (3, 5), (5, 3), (4, 4), (10, 10), (7, 12)]


def _undirected(edge_index):
    return {tuple(sorted(p)) for p in edge_index.t().tolist()}


@pytest.mark.parametrize("rows, cols", SIZES)
@pytest.mark.parametrize("topology, connectivity, expected", [
    ("rect", 4, lambda r, c: 2 * r * c - r - c),
    ("rect", 8, lambda r, c: 4 * r * c - 3 * r - 3 * c + 2),
    ("hex", 4, lambda r, c: 3 * r * c - 2 * r - 2 * c + 1),
])
def test_edge_counts_and_symmetry(rows, cols, topology, connectivity, expected):
    e = grid_edges(rows, cols, topology, connectivity)
    assert e.dtype == torch.long and e.shape == (2, 2 * expected(rows, cols))
    pairs = e.t().tolist()
    assert len(set(map(tuple, pairs))) == len(pairs), "duplicate edges"
    assert all(a != b for a, b in pairs), "self loops"
    assert set(map(tuple, pairs)) == {(b, a) for a, b in pairs}, "an edge lacks its reverse"
    assert int(e.min()) >= 0 and int(e.max()) < rows * cols


@pytest.mark.parametrize("rows, cols", SIZES)
@pytest.mark.parametrize("topology, connectivity, radius", [("rect", 4, 1.0), ("rect", 8, math.sqrt(2)), ("hex", 4, 1.0)])
def test_edges_join_exactly_the_nearest_neurons(rows, cols, topology, connectivity, radius):
    """Independent check from the coordinates: neighbours are the neurons within the radius."""
    d = grid_sq_distances(neuron_positions(rows, cols, topology)).sqrt()
    near = (d <= radius + 1e-4) & (d > 1e-4)
    expected = {tuple(sorted(p)) for p in near.nonzero().tolist()}
    assert _undirected(grid_edges(rows, cols, topology, connectivity)) == expected


def test_hex_neighbours_are_one_apart_and_interior_degree_is_six():
    rows, cols = 6, 7
    pos = neuron_positions(rows, cols, "hex")
    e = grid_edges(rows, cols, "hex")
    lengths = (pos[e[0]] - pos[e[1]]).norm(dim=1)
    assert torch.allclose(lengths, torch.ones_like(lengths), atol=1e-5)
    degree = torch.bincount(e[0], minlength=rows * cols).reshape(rows, cols)
    assert (degree[1:-1, 1:-1] == 6).all()
    rect_degree = torch.bincount(grid_edges(rows, cols, "rect", 8)[0]).reshape(rows, cols)
    assert (rect_degree[1:-1, 1:-1] == 8).all() and int(rect_degree[0, 0]) == 3


def test_adjacency_for_topographic_error_is_8_neighbour_on_rect():
    adj = adjacent_matrix(3, 3, "rect")
    centre = 4
    assert int(adj[centre].sum()) == 8 and not adj[centre, centre]
    assert int(adjacent_matrix(3, 3, "hex")[centre].sum()) == 6


@pytest.mark.parametrize("rows, cols, match", [
    (0, 0, "rows must be an integer >= 1"), (0, 5, "rows"), (5, -1, "cols"), (1, 1, "fewer than 2 neurons"),
    (2.5, 3, "rows"), (True, 3, "rows"),
])
def test_bad_grids_are_clear_errors(rows, cols, match):
    with pytest.raises(ConfigError, match=match):
        grid_edges(rows, cols)


def test_bad_topology_and_connectivity():
    with pytest.raises(ConfigError, match="topology must be one of rect, hex"):
        neuron_positions(3, 3, "square")
    with pytest.raises(ConfigError, match="connectivity must be 4 or 8"):
        grid_edges(3, 3, "rect", 6)
