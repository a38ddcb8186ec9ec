"""``som`` and ``som_select``: Kohonen self-organising maps as converters.

Both train a :class:`graphforge.som.SelfOrganizingMap` on the training split, flattened
and standardised with the training statistics the engine's normaliser uses (per
channel for images, per feature for vectors), and log the quantization error,
topographic error and label-clustering accuracy of every SOM epoch.

``som`` (level ``"dataset"``) returns the trained map as one PyG graph:

* nodes = neurons, ``x`` = their weight vectors ``[M, D]``;
* ``edge_index`` = the grid (4- or 8-neighbour rectangular, or 6-neighbour hexagonal),
  both directions;
* ``edge_weight`` = ``exp(-d / mean(d))`` where ``d`` is the U-matrix distance (the
  Euclidean distance between the two neurons' weights): GNN layers multiply messages
  by the edge weight, so neurons on the same side of a cluster border (small ``d``)
  exchange more than neurons across one; the weights lie in (0, 1] and do not depend
  on the data's scale;
* ``hits`` (training samples per neuron), ``neuron_label`` / ``y`` (majority class of
  its training samples, -1 where none), ``train_mask`` / ``val_mask`` / ``test_mask``
  (neurons that samples of the split map to);
* ``train_index`` / ``val_index`` / ``test_index`` (each sample's best-matching unit)
  with ``train_y`` / ``val_y`` / ``test_y``: a GNN classifies the neurons and every
  sample gets its best-matching unit's prediction
  (``graphforge run --converter som --model sage``).

``som_select`` (level ``"sample"``) is the feature selection of the original SOM + kNN
pipeline: after :meth:`SOMSelect.fit` it keeps the ``features`` input features the map
finds most relevant, and its module returns ``x.flatten(1)[:, selected]``
(``graphforge run --converter som_select --model knn -o k=3``). Rules (the scores and
greedy selections live in :mod:`graphforge.som.select`):

* ``selection="decorrelated"`` (default): greedy; each step keeps the feature with the
  largest between-class variance of the labelled prototypes (``between``) times
  ``(1 - r^2)^2``, ``r`` its largest hits-weighted correlation across the prototypes with a
  feature already kept. Top-``k`` rules spend their budget on a few blobs of neighbouring,
  nearly identical pixels; this one spreads it over pixels that tell classes apart in
  different ways.
* ``selection="residual"``: greedy and unsupervised; pivoted Gram-Schmidt (column-subset
  selection with a small ridge) on the hits-weighted prototypes: each step keeps the
  feature with the most prototype variance the kept ones do not explain linearly.
* ``selection="between"``: top-``k`` of the between-class variance of the prototypes,
  each neuron counted once per training sample of each class it wins.
* ``selection="norm"`` (the original's): the L2 norm of each input feature's column of
  the ``[neurons, features]`` weight matrix, with the weights mapped back to the input's
  own scale (pixels in [0, 1], as the original trained on). For images this favours
  pixels where the prototypes carry ink, whether or not they differ between classes.
* ``selection="variance"``: the variance of each feature's column across the
  neurons (in standardised units). A feature that every prototype has at the same
  value cannot separate anything, however large that value; one whose value changes
  across the map separates the regions of the map, i.e. the clusters it learned.

``decorrelated``, ``residual`` and ``between`` work on the standardised weights, the units
the kNN measures distances in. Only training labels enter (through each neuron's class
counts).

Both write ``som_history.csv`` and ``som_map.pt`` (weights, labels, hits) into the run
directory, merge the final SOM figures into ``metrics.json`` and draw the U-matrix, the
class map, the component planes, the hit map, the SOM training curves and the pixel
relevance heat map over a test image under ``plots/``.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from graphforge.core.converter import Converter
from graphforge.core.data import DataSplits, InputSpec
from graphforge.errors import ConfigError
from graphforge.som import select as som_select_rules
from graphforge.som.som import SelfOrganizingMap

log = logging.getLogger("graphforge")

SELECTIONS = ("decorrelated", "residual", "between", "variance", "norm")
#: Rules that pick features one at a time (the others rank a score and keep the top ``k``).
GREEDY_SELECTIONS = ("decorrelated", "residual")
_HISTORY_COLUMNS = ("epoch", "sigma", "lr", "quantization_error", "topographic_error", "label_accuracy")


def _check_device(device: str) -> str:
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device


class _SOMConverter(Converter):
    """Shared training, reporting and pictures of the two SOM converters."""

    inputs = frozenset({"images", "vectors"})

    @classmethod
    def upgrade_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Options recorded by a checkpoint of an earlier version, as this one reads them: maps
        recorded before the ``dtype`` option were float32 maps."""
        options.setdefault("dtype", "float32")
        return options

    def _init_som(self, rows: int, cols: int, topology: str, neighborhood: str, sigma: float | None, lr: float,
                  decay: str, mode: str, init: str, epochs: int, batch_size: int, connectivity: int, seed: int,
                  device: str, metric: str, dtype: str) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs (SOM epochs) must be an integer >= 1, got {epochs!r}")
        self.rows, self.cols, self.topology, self.neighborhood = rows, cols, topology, neighborhood
        self.sigma, self.lr, self.decay, self.mode, self.init = sigma, lr, decay, mode, init
        self.epochs, self.batch_size, self.connectivity, self.seed = epochs, batch_size, connectivity, seed
        self.metric, self.dtype = metric, dtype
        self.device = _check_device(device)
        self._make_som(torch.device("cpu"))  # validates every SOM option now, before any data is loaded
        self._som: SelfOrganizingMap | None = None
        self._history: list[dict[str, Any]] = []

    def _make_som(self, device: torch.device) -> SelfOrganizingMap:
        return SelfOrganizingMap(
            self.rows, self.cols, topology=self.topology, neighborhood=self.neighborhood, sigma=self.sigma,
            lr=self.lr, decay=self.decay, mode=self.mode, init=self.init, batch_size=self.batch_size,
            connectivity=self.connectivity, metric=self.metric, seed=self.seed, device=device, dtype=self.dtype)

    # --- training ----------------------------------------------------------------------------
    def _train(self, data: DataSplits) -> Tensor:
        """Train the map on the standardised training split; return those training vectors."""
        from graphforge.engine.network import Normalizer
        from graphforge.engine.runtime import resolve_device

        device = resolve_device(self.device)
        self._normalizer = Normalizer.fit(data.train, data.kind)
        self._spec = data.spec
        self._class_names = list(data.class_names)
        self._num_classes = data.num_classes
        x = self._vectors(data.train.x, device)
        som = self._make_som(device)
        name = self.registry_name()
        log.info("%s: training a %dx%d %s SOM (%s, %s init) on %d samples x %d features for %d epochs on %s",
                 name, self.rows, self.cols, self.topology, self.mode, self.init, x.shape[0], x.shape[1],
                 self.epochs, device)

        def progress(row: dict[str, Any]) -> None:
            log.info("%s epoch %d/%d  quantization error %.4f  topographic error %.4f  label accuracy %.4f",
                     name, row["epoch"], self.epochs, row["quantization_error"], row["topographic_error"],
                     row.get("label_accuracy", float("nan")))

        start = time.perf_counter()
        self._history = som.fit(x, self.epochs, y=data.train.y, callback=progress)
        self._seconds = time.perf_counter() - start
        self._som = som
        bmus = som.bmu(x)
        self._neuron_labels, self._label_counts = som.label_counts(bmus, data.train.y.to(device), data.num_classes)
        self._hits = torch.bincount(bmus, minlength=som.num_neurons)
        # One test image for the relevance picture (never used for fitting).
        source = data.test if len(data.test) else data.train
        self._example = (source.x[0], self._class_names[int(source.y[0])])
        self._bmu_accuracy: dict[str, float] = {}
        for split in ("val", "test"):
            s = getattr(data, split)
            if len(s):
                pred = self._neuron_labels[som.bmu(self._vectors(s.x, device))]
                self._bmu_accuracy[split] = float((pred.cpu() == s.y).float().mean())
        return x

    @torch.no_grad()
    def _vectors(self, x: Tensor, device: torch.device) -> Tensor:
        """Standardise with the training statistics and flatten: ``[N, D]`` on ``device``."""
        out = [self._normalizer(x[i:i + 4096]).reshape(len(x[i:i + 4096]), -1) for i in range(0, len(x), 4096)]
        return torch.cat(out).to(device) if out else torch.zeros(0, self._spec.num_features, device=device)

    def _feature_scale(self) -> tuple[Tensor, Tensor]:
        """Per-feature mean and std of the normaliser (to map weights back to the input scale)."""
        shape = (1, *self._spec.shape)
        mean = self._normalizer.mean.expand(shape).reshape(-1)
        std = self._normalizer.std.expand(shape).reshape(-1)
        return mean, std

    def relevance(self, selection: str = "variance") -> Tensor:
        """Relevance of each input feature from the trained weights ``[D]`` (see the module docstring).

        The greedy rules rank by a score too: ``decorrelated`` by ``between`` (before the
        redundancy discount), ``residual`` by the hits-weighted variance (its first step).
        """
        som = self._fitted()
        w = som.weights
        assert w is not None
        if selection == "norm":
            mean, std = self._feature_scale()
            return (w * std.to(w.device) + mean.to(w.device)).norm(dim=0).float().cpu()
        if selection in ("between", "decorrelated"):
            return som_select_rules.between_class_variance(w, self._hits, self._label_counts).float()
        if selection == "residual":
            return som_select_rules.hits_weighted_variance(w, self._hits).float()
        return w.var(dim=0, unbiased=False).float().cpu()

    def select(self, selection: str, k: int) -> Tensor:
        """The ``k`` features ``selection`` keeps, most relevant (or first picked) first ``[k]``."""
        som = self._fitted()
        w = som.weights
        assert w is not None
        if selection == "decorrelated":
            return som_select_rules.greedy_decorrelated(self.relevance(selection), w, self._hits, k)
        if selection == "residual":
            return som_select_rules.greedy_residual(w, self._hits, k)
        return self.relevance(selection).topk(k).indices

    def _fitted(self) -> SelfOrganizingMap:
        if self._som is None:
            raise ConfigError(f"{self.registry_name()}: the map is not trained yet (fit or convert the data first)")
        return self._som

    # --- outputs --------------------------------------------------------------------------
    def report(self, rundir: Any) -> dict[str, Any]:
        """Write ``som_history.csv`` and ``som_map.pt``; return the final SOM figures."""
        from graphforge.io import save_torch, write_text

        if self._som is None:
            return {}
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(_HISTORY_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self._history)
        write_text(rundir.file("som_history.csv"), buf.getvalue())
        save_torch(rundir.file("som_map.pt"), {
            **self._som.state_dict(), "neuron_label": self._neuron_labels.cpu(), "hits": self._hits.cpu(),
            "label_counts": self._label_counts.cpu(), "class_names": self._class_names, "history": self._history})
        last = self._history[-1]
        out = {
            "som_quantization_error": last["quantization_error"],
            "som_topographic_error": last["topographic_error"],
            "som_label_accuracy": last.get("label_accuracy"),
            "som_epochs": len(self._history),
            "som_seconds": self._seconds,
            "som_grid": f"{self.rows}x{self.cols} {self.topology}",
        }
        out.update({f"som_bmu_{s}_accuracy": v for s, v in self._bmu_accuracy.items()})
        return out

    def _write_map_plots(self, plot_dir: Path, selection: str, selected: Tensor | None) -> list[Path]:
        from graphforge.som import plots

        som = self._fitted()
        name = self.registry_name()
        grid = f"{self.rows}x{self.cols} {self.topology}"
        rel = self.relevance(selection)
        top = rel.argsort(descending=True)[:16].tolist()
        if self._spec.kind == "images" and len(self._spec.shape) == 3:
            _, h, w = self._spec.shape
            names = [f"pixel ({(f % (h * w)) // w}, {f % w})" for f in top]
        else:
            names = [f"feature {f}" for f in top]
        paths = [
            plots.plot_u_matrix(som, plot_dir / "som_u_matrix.png", f"{name}: U-matrix ({grid})"),
            plots.plot_class_map(som, self._neuron_labels, self._label_counts, self._class_names,
                                 plot_dir / "som_class_map.png", f"{name}: majority class of each neuron"),
            plots.plot_component_planes(som, top, plot_dir / "som_component_planes.png", names,
                                        f"{name}: component planes of the {len(top)} most relevant features ({selection})"),
            plots.plot_hit_map(som, self._hits, plot_dir / "som_hit_map.png", f"{name}: training samples per neuron"),
            plots.plot_training(self._history, plot_dir / "som_training.png", f"{name}: SOM training ({grid})"),
        ]
        example, label = self._example
        if self._spec.kind == "images" and len(self._spec.shape) == 3:
            paths.append(plots.plot_pixel_relevance(rel.reshape(self._spec.shape), example,
                                                    plot_dir / "som_pixel_relevance.png", selected=selected,
                                                    label=label, rule=selection))
        else:
            paths.append(plots.plot_feature_relevance(rel, plot_dir / "som_feature_relevance.png", selected=selected,
                                                      rule=selection))
        return paths


class SOM(_SOMConverter):
    """The trained self-organising map as a graph; samples map to their best-matching neuron.

    Args:
        rows (int, optional): Rows of neurons. (default: ``10``)
        cols (int, optional): Columns of neurons. (default: ``10``)
        topology (str, optional): ``"rect"`` or ``"hex"``. (default: ``"rect"``)
        neighborhood (str, optional): ``"gaussian"``, ``"bubble"`` or ``"mexican_hat"``. (default: ``"gaussian"``)
        sigma (float, optional): Start radius in grid steps. (default: ``max(rows, cols) / 2``)
        lr (float, optional): Start learning rate (online mode). (default: ``0.5``)
        decay (str, optional): ``"exponential"`` or ``"linear"`` decay of radius and rate. (default: ``"exponential"``)
        mode (str, optional): ``"batch"`` or ``"online"`` (mini-batch) training. (default: ``"batch"``)
        init (str, optional): ``"pca"`` or ``"random"``. (default: ``"pca"``)
        epochs (int, optional): SOM epochs (separate from the GNN's ``--epochs``). (default: ``20``)
        batch_size (int, optional): Samples per online update. (default: ``256``)
        connectivity (int, optional): 4 or 8 grid neighbours (rectangular grids). (default: ``4``)
        metric (str, optional): Distance that picks each sample's best-matching neuron (any
            metric of :mod:`graphforge.neighbors.metrics`: ``euclidean``, ``cosine``,
            ``cityblock``, ``linf``, ...). (default: ``"euclidean"``)
        seed (int, optional): Seed of the SOM. (default: ``0``)
        device (str, optional): ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for the SOM. (default: ``"auto"``)
        dtype (str, optional): ``float64`` or ``float32``: the SOM's precision. float64 gives the
            same map at any thread count; float32 is 1.5-3.6x faster on a CPU but its map (and so
            the result) changes with the thread count (see ``SelfOrganizingMap``). (default: ``"float64"``)
    """

    name = "som"
    level = "dataset"

    def __init__(self, rows: int = 10, cols: int = 10, topology: str = "rect", neighborhood: str = "gaussian",
                 sigma: float | None = None, lr: float = 0.5, decay: str = "exponential", mode: str = "batch",
                 init: str = "pca", epochs: int = 20, batch_size: int = 256, connectivity: int = 4, seed: int = 0,
                 device: str = "auto", metric: str = "euclidean", dtype: str = "float64") -> None:
        self._init_som(rows, cols, topology, neighborhood, sigma, lr, decay, mode, init, epochs, batch_size,
                       connectivity, seed, device, metric, dtype)

    def output_spec(self, spec: InputSpec) -> InputSpec:
        """One graph over the neurons, whose features are the flattened input's."""
        return InputSpec("graph", (spec.num_features,))

    def convert(self, data: DataSplits) -> Any:
        """Train the map on ``data.train`` and return it as a PyG ``Data`` (see the module docstring)."""
        from torch_geometric.data import Data

        x_train = self._train(data)
        som = self._fitted()
        assert som.weights is not None
        edge_index = som.edges()
        dist = som.edge_distances()
        edge_weight = torch.exp(-dist / dist.mean().clamp_min(1e-12))
        m = som.num_neurons
        graph = Data(x=som.weights.to("cpu", torch.float32, copy=True), edge_index=edge_index.cpu(), edge_weight=edge_weight.cpu(),
                     hits=self._hits.cpu(), neuron_label=self._neuron_labels.cpu(), y=self._neuron_labels.cpu(),
                     pos=som.positions.cpu())
        for split in ("train", "val", "test"):
            s = getattr(data, split)
            xs = x_train if split == "train" else self._vectors(s.x, x_train.device)
            index = som.bmu(xs).cpu() if len(s) else torch.zeros(0, dtype=torch.long)
            mask = torch.zeros(m, dtype=torch.bool)
            mask[index] = True
            graph[f"{split}_index"] = index
            graph[f"{split}_y"] = s.y.clone()
            graph[f"{split}_mask"] = mask
        return graph

    def write_plots(self, history: list[dict[str, Any]], plot_dir: Path) -> list[Path]:
        """U-matrix, class map, component planes, hit map, SOM training curves, pixel relevance."""
        if self._som is None:
            return []
        return self._write_map_plots(plot_dir, "variance", None)


class FeatureSelect(nn.Module):
    """Keeps the selected input features: ``x.flatten(1)[:, index]``.

    Args:
        index (Tensor): Flat indices of the kept features ``[K]`` (a buffer, so a
            checkpoint restores the selection).

    Shapes:
        input ``[N, ...]`` with ``D`` features per sample; output ``[N, K]``.
    """

    def __init__(self, index: Tensor) -> None:
        super().__init__()
        self.register_buffer("index", index.long().clone())

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, self.index]

    def extra_repr(self) -> str:
        return f"features={self.index.numel()}"


class SOMSelect(_SOMConverter):
    """Feature selection from a self-organising map's weights (the SOM + kNN pipeline).

    Args:
        features (int, optional): Input features to keep (clamped to the input's size). (default: ``100``)
        selection (str, optional): ``"decorrelated"`` (greedy: between-class variance of
            the labelled prototypes, discounted by the squared correlation with the features
            already kept), ``"residual"`` (greedy, unsupervised: the most prototype variance
            the kept features do not explain), ``"between"`` (top between-class variance),
            ``"variance"`` (variance of each feature across the neurons) or ``"norm"`` (the
            original's rule: norm of each feature's weight column). (default: ``"decorrelated"``)
        rows (int, optional): Rows of neurons. (default: ``20``; ``som``'s is 10: on MNIST a
            20x20 map gives the greedy rules ~0.4 points more validation accuracy than a 10x10
            one, in about the same time)
        cols (int, optional): Columns of neurons. (default: ``20``)
        topology (str, optional): ``"rect"`` or ``"hex"``. (default: ``"rect"``)
        neighborhood (str, optional): ``"gaussian"``, ``"bubble"`` or ``"mexican_hat"``. (default: ``"gaussian"``)
        sigma (float, optional): Start radius in grid steps. (default: ``max(rows, cols) / 2``)
        lr (float, optional): Start learning rate (online mode). (default: ``0.5``)
        decay (str, optional): ``"exponential"`` or ``"linear"``. (default: ``"exponential"``)
        mode (str, optional): ``"batch"`` or ``"online"``. (default: ``"batch"``)
        init (str, optional): ``"pca"`` or ``"random"``. (default: ``"pca"``)
        epochs (int, optional): SOM epochs. (default: ``20``)
        batch_size (int, optional): Samples per online update. (default: ``256``)
        connectivity (int, optional): 4 or 8 grid neighbours (rectangular grids). (default: ``4``)
        metric (str, optional): Distance that picks each sample's best-matching neuron (any
            metric of :mod:`graphforge.neighbors.metrics`: ``euclidean``, ``cosine``,
            ``cityblock``, ``linf``, ...). (default: ``"euclidean"``)
        seed (int, optional): Seed of the SOM. (default: ``0``)
        device (str, optional): ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for the SOM. (default: ``"auto"``)
        dtype (str, optional): ``float64`` or ``float32``: the SOM's precision. float64 gives the
            same map at any thread count; float32 is 1.5-3.6x faster on a CPU but its map (and so
            the result) changes with the thread count (see ``SelfOrganizingMap``). (default: ``"float64"``)

    Before :meth:`fit` (or when a checkpoint is about to be loaded into it) the module
    keeps the first ``features`` features; :meth:`fit` or the checkpoint sets the selection.
    """

    name = "som_select"
    level = "sample"

    def __init__(self, features: int = 100, selection: str = "decorrelated", rows: int = 20, cols: int = 20,
                 topology: str = "rect", neighborhood: str = "gaussian", sigma: float | None = None, lr: float = 0.5,
                 decay: str = "exponential", mode: str = "batch", init: str = "pca", epochs: int = 20,
                 batch_size: int = 256, connectivity: int = 4, seed: int = 0, device: str = "auto",
                 metric: str = "euclidean", dtype: str = "float64") -> None:
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ConfigError(f"features must be an integer >= 1, got {features!r}")
        if selection not in SELECTIONS:
            raise ConfigError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
        self.features = features
        self.selection = selection
        self._init_som(rows, cols, topology, neighborhood, sigma, lr, decay, mode, init, epochs, batch_size,
                       connectivity, seed, device, metric, dtype)
        self._selected: Tensor | None = None

    def _num_kept(self, spec: InputSpec) -> int:
        return min(self.features, spec.num_features)

    def output_spec(self, spec: InputSpec) -> InputSpec:
        """Vectors of ``min(features, input features)`` values."""
        return InputSpec("vectors", (self._num_kept(spec),))

    def fit(self, data: DataSplits) -> None:
        """Train the map on ``data.train`` and select the most relevant features."""
        self._train(data)
        k = self._num_kept(data.spec)
        self._selected = self.select(self.selection, k).sort().values
        log.info("%s: kept %d of %d features by %s", self.registry_name(), k, data.spec.num_features, self.selection)

    def build(self, spec: InputSpec) -> nn.Module:
        """Return the :class:`FeatureSelect` module (the fitted selection, if any)."""
        self.check_input(spec)
        k = self._num_kept(spec)
        if self._selected is not None and self._selected.numel() == k and self._spec == spec:
            return FeatureSelect(self._selected)
        return FeatureSelect(torch.arange(k))

    def report(self, rundir: Any) -> dict[str, Any]:
        """The SOM figures plus the selection (merged into ``metrics.json``)."""
        out = super().report(rundir)
        if self._selected is not None:
            out.update({"som_selection": self.selection, "som_selected_features": self._selected.tolist()})
        return out

    def write_plots(self, history: list[dict[str, Any]], plot_dir: Path) -> list[Path]:
        """The map pictures and the relevance of every pixel over a test image, selected ones outlined."""
        if self._som is None:
            return []
        return self._write_map_plots(plot_dir, self.selection, self._selected)
