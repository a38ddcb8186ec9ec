"""Data containers passed between datasets, converters and models."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from graphforge.errors import DataError

#: The kinds graphforge itself knows. Plugins may add their own sample kinds (for example
#: ``"points"``, ``[N, P, 3]`` point clouds): any lower-case identifier is accepted.
INPUT_KINDS: tuple[str, ...] = ("images", "vectors", "graphs", "graph")
#: Kinds that describe graphs rather than per-sample tensors.
GRAPH_KINDS: tuple[str, ...] = ("graphs", "graph")


@dataclass(frozen=True)
class InputSpec:
    """What a stage produces or consumes.

    Attributes:
        kind: ``"images"`` (``[N, C, H, W]``), ``"vectors"`` (``[N, D]``), ``"graphs"``
            (one PyG graph per sample, batched), ``"graph"`` (one graph over the
            whole dataset, transductive), or a kind a plugin defines (e.g. ``"points"``
            for ``[N, P, 3]`` point clouds; its last axis holds the features).
        shape: Shape of one sample: ``(C, H, W)`` for images, ``(D,)`` for vectors,
            ``(F,)`` node features for graphs, ``(P, 3)`` for points.
    """

    kind: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind.isidentifier() or self.kind != self.kind.lower():
            raise ValueError(f"input kind must be a lower-case identifier such as {INPUT_KINDS}, got {self.kind!r}")

    @property
    def num_features(self) -> int:
        """Number of features per sample (images are flattened)."""
        n = 1
        for s in self.shape:
            n *= int(s)
        return n


@dataclass
class Split:
    """One split of a dataset: samples ``x`` and integer labels ``y``.

    ``x`` is ``[N, C, H, W]`` for images (uint8 in 0..255 or float in [0, 1]) and
    ``[N, D]`` float for vectors; ``y`` is ``[N]`` int64 in ``0..num_classes-1``.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"split has {self.x.shape[0]} samples but {self.y.shape[0]} labels"
            )
        if self.y.dtype != torch.long:
            self.y = self.y.long()

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: torch.Tensor) -> Split:
        """Return the samples at ``index``."""
        return Split(self.x[index], self.y[index])


@dataclass
class DataSplits:
    """A dataset loaded into train / validation / test splits.

    Attributes:
        train, val, test: The splits.
        num_classes: Number of classes.
        kind: ``"images"``, ``"vectors"`` or a plugin's own sample kind (not a graph kind).
        class_names: Human-readable class names (default: ``"0"``, ``"1"``, ...).
        name: Dataset name, for reports.
    """

    train: Split
    val: Split
    test: Split
    num_classes: int
    kind: str
    class_names: list[str] = field(default_factory=list)
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind.isidentifier() or self.kind in GRAPH_KINDS:
            raise DataError(f"dataset kind must be 'images', 'vectors' or a plugin's sample kind, got {self.kind!r}")
        if not self.class_names:
            self.class_names = [str(i) for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise DataError(
                f"{len(self.class_names)} class names for {self.num_classes} classes"
            )
        expected_ndim = {"images": 4, "vectors": 2}.get(self.kind)
        for split_name in ("train", "val", "test"):
            split: Split = getattr(self, split_name)
            if (expected_ndim and split.x.ndim != expected_ndim) or split.x.ndim < 2:
                raise DataError(
                    f"{split_name} split: {self.kind} must be {expected_ndim or 'at least 2'}-D, "
                    f"got shape {tuple(split.x.shape)}"
                )
            if len(split) and (split.y.min() < 0 or split.y.max() >= self.num_classes):
                raise DataError(
                    f"{split_name} split has labels outside 0..{self.num_classes - 1}"
                )

    @property
    def spec(self) -> InputSpec:
        """The :class:`InputSpec` of one sample."""
        return InputSpec(self.kind, tuple(int(s) for s in self.train.x.shape[1:]))

    def sizes(self) -> dict[str, int]:
        """Return the number of samples of each split."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


#: The three splits, in the order graphforge reports them.
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


def check_graph_splits(graph: object) -> bool:
    """Check that a dataset graph says which nodes hold which split's samples.

    A dataset converter's graph (see :class:`graphforge.Converter`) either has the
    samples as nodes, with ``y`` and ``train_mask`` / ``val_mask`` / ``test_mask``, or
    maps samples onto nodes with ``{split}_index`` (each sample's node) and
    ``{split}_y`` (its label).

    Returns:
        ``True`` for the mapped layout, ``False`` for the masks layout.

    Raises:
        DataError: Naming the first missing attribute.
    """
    mapped = all(getattr(graph, f"{s}_index", None) is not None for s in SPLIT_NAMES)
    needed = [f"{s}_{a}" for s in SPLIT_NAMES for a in ("index", "y")] if mapped else ["y", *[f"{s}_mask" for s in SPLIT_NAMES]]
    for attr in needed:
        if getattr(graph, attr, None) is None:
            raise DataError(
                f"the converter's graph has no {attr!r}; a dataset converter must set y and the three "
                "masks, or {split}_index and {split}_y for train, val and test"
            )
    return mapped


def graph_split_nodes(graph: object, split: str, mapped: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the node of each sample of ``split`` (int64 ``[n]``) and the samples' labels ``[n]``.

    Args:
        graph: A dataset graph (either layout of :func:`check_graph_splits`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        mapped: The layout, when already known from :func:`check_graph_splits`.
    """
    if mapped is None:
        mapped = check_graph_splits(graph)
    if mapped:
        return getattr(graph, f"{split}_index").long(), getattr(graph, f"{split}_y").long()
    mask = getattr(graph, f"{split}_mask")
    labels: torch.Tensor = graph.y  # type: ignore[attr-defined]
    if mask.dtype != torch.bool:  # an index tensor instead of a mask
        return mask.long(), labels[mask].long()
    return mask.nonzero().view(-1), labels[mask].long()
