"""``shapes3d``: point clouds sampled from the surfaces of six 3-D shapes."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from graphforge import Dataset, DataSplits, Split
from graphforge.core.splits import stratified_split

SHAPES: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid")


def _sphere(n: int, g: torch.Generator) -> torch.Tensor:
    p = torch.randn(n, 3, generator=g)
    return p / p.norm(dim=1, keepdim=True)


def _cube(n: int, g: torch.Generator) -> torch.Tensor:
    p = torch.rand(n, 3, generator=g) * 2 - 1
    axis = torch.randint(0, 3, (n,), generator=g)
    side = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    p[torch.arange(n), axis] = side
    return p


def _cylinder(n: int, g: torch.Generator) -> torch.Tensor:
    t = torch.rand(n, generator=g) * 2 * math.pi
    z = torch.rand(n, generator=g) * 2 - 1
    return torch.stack([t.cos(), t.sin(), z], dim=1)


def _cone(n: int, g: torch.Generator) -> torch.Tensor:
    t = torch.rand(n, generator=g) * 2 * math.pi
    h = torch.rand(n, generator=g).sqrt()  # uniform over the lateral surface
    return torch.stack([h * t.cos(), h * t.sin(), 1 - 2 * h], dim=1)


def _torus(n: int, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=g) * 2 * math.pi
    v = torch.rand(n, generator=g) * 2 * math.pi
    r_major, r_minor = 0.7, 0.3
    return torch.stack([(r_major + r_minor * v.cos()) * u.cos(), (r_major + r_minor * v.cos()) * u.sin(),
                        r_minor * v.sin()], dim=1)


def _pyramid(n: int, g: torch.Generator) -> torch.Tensor:
    apex = torch.tensor([0.0, 0.0, 1.0])
    base = torch.tensor([[-1.0, -1.0, -1.0], [1.0, -1.0, -1.0], [1.0, 1.0, -1.0], [-1.0, 1.0, -1.0]])
    face = torch.randint(0, 4, (n,), generator=g)
    a, b = base[face], base[(face + 1) % 4]
    r1, r2 = torch.rand(n, 1, generator=g), torch.rand(n, 1, generator=g)
    flip = (r1 + r2) > 1
    r1, r2 = torch.where(flip, 1 - r1, r1), torch.where(flip, 1 - r2, r2)
    return apex + r1 * (a - apex) + r2 * (b - apex)


_SAMPLERS = {"sphere": _sphere, "cube": _cube, "cylinder": _cylinder, "cone": _cone, "torus": _torus,
             "pyramid": _pyramid}


def _random_rotation(g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def sample_shape(name: str, points: int, g: torch.Generator, noise: float = 0.02) -> torch.Tensor:
    """Sample one randomly rotated, scaled and jittered cloud ``[points, 3]`` of shape ``name``."""
    p = _SAMPLERS[name](points, g)
    scale = 0.7 + 0.6 * torch.rand(3, generator=g)
    p = (p * scale) @ _random_rotation(g).T
    return p + noise * torch.randn(points, 3, generator=g)


class Shapes3D(Dataset):
    """Synthetic point clouds of six 3-D shapes (generated, no files needed).

    Args:
        points (int, optional): Points per cloud. (default: ``128``)
        per_class (int, optional): Clouds per shape. (default: ``100``)
        noise (float, optional): Standard deviation of the jitter. (default: ``0.02``)
        data_seed (int, optional): Seed of the generated clouds (the run's ``--seed``
            only drives the split). (default: ``0``)
        val_fraction (float, optional): Validation share. (default: ``0.1``)
        test_fraction (float, optional): Test share. (default: ``0.1``)
    """

    needs_files = False

    def __init__(self, points: int = 128, per_class: int = 100, noise: float = 0.02, data_seed: int = 0,
                 val_fraction: float = 0.1, test_fraction: float = 0.1) -> None:
        if isinstance(points, bool) or not isinstance(points, int) or points < 4:
            raise ValueError(f"points must be an integer >= 4, got {points!r}")
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 10:
            raise ValueError(f"per_class must be an integer >= 10 (to stratify the splits), got {per_class!r}")
        if not isinstance(noise, (int, float)) or noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise!r}")
        if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise ValueError("val_fraction and test_fraction must be in (0, 1) and sum to less than 1")
        self.points = points
        self.per_class = per_class
        self.noise = float(noise)
        self.data_seed = int(data_seed)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)

    def load(self, *, root: Path | None, download: bool, seed: int) -> DataSplits:
        """Generate the clouds and split them (stratified, seeded)."""
        g = torch.Generator().manual_seed(self.data_seed)
        clouds, labels = [], []
        for label, name in enumerate(SHAPES):
            for _ in range(self.per_class):
                clouds.append(sample_shape(name, self.points, g, self.noise))
                labels.append(label)
        x, y = torch.stack(clouds), torch.tensor(labels)
        fractions = [1 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction]
        train, val, test = stratified_split(y, fractions, seed)
        return DataSplits(Split(x[train], y[train]), Split(x[val], y[val]), Split(x[test], y[test]),
                          num_classes=len(SHAPES), kind="points", class_names=list(SHAPES), name="shapes3d")
