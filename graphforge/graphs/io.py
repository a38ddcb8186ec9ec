"""Write graphs to files other tools read, and read them back.

========  ==================================================================================
format    what is written
========  ==================================================================================
``pt``    a dict of tensors (``edge_index``, ``edge_weight``, ``x``, ``y``, masks, ``batch``,
          ``k``, ...) with ``torch.save``: ``torch.load(path, weights_only=True)`` reads it
          without unpickling any object; :func:`load_graph` turns it into a PyG ``Data``
``csv``   ``PATH``: one edge per line, ``src,dst[,weight]``; ``PATH.nodes.csv``: ``node`` and,
          when present, ``label``, ``split``, ``graph`` (features are not written: use
          ``pt``, ``npz`` or ``parquet``)
``parquet`` the same two tables as Parquet (``PATH`` and ``PATH.nodes.parquet``); node
          features as a ``features`` list column
``npz``   the adjacency as a SciPy CSR matrix (``scipy.sparse.load_npz(path)`` reads it;
          weights as values, 1 without weights) plus ``x``, ``y`` and ``split`` arrays
``graphml`` / ``gexf``  through networkx (``networkx.read_graphml``), node ``label`` /
          ``split`` and edge ``weight`` attributes
========  ==================================================================================

Every file is written to a temporary name and renamed when complete, so a reader never
sees half a graph; an existing file is refused unless ``force=True``. The CSV and Parquet
writers stream the edges in blocks, so memory stays O(E) for a million-node graph.
"""

from __future__ import annotations

import operator
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphforge.errors import ConfigError, DataError
from graphforge.io import atomic_path

FORMATS: tuple[str, ...] = ("pt", "csv", "parquet", "npz", "graphml", "gexf")
GRAPH_FILE_FORMAT = "graphforge-graph"
_BLOCK_EDGES = 1 << 20
#: Node-level tensors kept in ``pt`` files (besides ``x`` and ``y``), when present.
_NODE_KEYS = ("train_mask", "val_mask", "test_mask", "batch", "pos", "hits", "neuron_label")
_GRAPH_KEYS = ("k", "ptr", "graph_y")
_EDGE_KEYS = ("edge_weight", "edge_score")
_SPLITS = ("train", "val", "test")


def format_of(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The format named by ``fmt``, else by the file's suffix.

    Raises:
        ConfigError: If neither names one of :data:`FORMATS`.
    """
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown graph format {fmt!r}; choose one of: {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ConfigError(f"cannot tell the graph format of {path} from its suffix; name it with --format "
                          f"(one of: {', '.join(FORMATS)})")
    return suffix


def _sidecar(path: Path, fmt: str) -> Path:
    return path.with_name(f"{path.name}.nodes.{fmt}")


def _targets(path: Path, fmt: str) -> list[Path]:
    return [path, _sidecar(path, fmt)] if fmt in ("csv", "parquet") else [path]


def _node_split(data: Any, n: int) -> np.ndarray | None:
    """``0`` / ``1`` / ``2`` for train / val / test nodes (``-1`` for none), if the graph has masks."""
    masks = [getattr(data, f"{s}_mask", None) for s in _SPLITS]
    if not all(isinstance(m, torch.Tensor) and m.numel() == n for m in masks):
        return None
    split = np.full(n, -1, dtype=np.int8)
    for i, m in enumerate(masks):
        split[m.cpu().numpy().astype(bool)] = i
    return split


def _node_labels(data: Any, n: int) -> np.ndarray | None:
    y = getattr(data, "y", None)
    if isinstance(y, torch.Tensor) and y.dim() == 1 and y.numel() == n:
        return y.cpu().numpy()
    return None


def save_graph(data: Any, path: str | os.PathLike[str], fmt: str | None = None, *, force: bool = False) -> list[Path]:
    """Write ``data`` (a PyG ``Data``) to ``path`` in ``fmt`` (default: from the suffix).

    Returns:
        The files written.

    Raises:
        ConfigError: For an unknown format, an existing file without ``force``, a directory
            that cannot be written, or networkx missing for GraphML / GEXF.
    """
    path = Path(path)
    fmt = format_of(path, fmt)
    targets = _targets(path, fmt)
    if not force:
        existing = [str(p) for p in targets if p.exists()]
        if existing:
            raise ConfigError(f"{', '.join(existing)} already exist(s); pass --force (force=True) to replace")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a file name such as {path / 'graph.pt'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        {"pt": _save_pt, "csv": _save_csv, "parquet": _save_parquet, "npz": _save_npz,
         "graphml": _save_networkx, "gexf": _save_networkx}[fmt](data, path, fmt)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return targets


def _save_pt(data: Any, path: Path, fmt: str) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for key in data.keys():
        value = data[key]
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().cpu()
    obj = {"format": GRAPH_FILE_FORMAT, "version": 1, "num_nodes": int(data.num_nodes), "tensors": tensors}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _edge_columns(data: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    edge_index = data.edge_index.cpu().long()
    weight = getattr(data, "edge_weight", None)
    return edge_index, weight.detach().cpu().float() if isinstance(weight, torch.Tensor) else None


def _save_csv(data: Any, path: Path, fmt: str) -> None:
    import pandas as pd

    edge_index, weight = _edge_columns(data)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write("src,dst,weight\n" if weight is not None else "src,dst\n")
        for start in range(0, edge_index.shape[1], _BLOCK_EDGES):  # blocks: memory stays O(E)
            block = {"src": edge_index[0, start:start + _BLOCK_EDGES].numpy(),
                     "dst": edge_index[1, start:start + _BLOCK_EDGES].numpy()}
            if weight is not None:
                block["weight"] = weight[start:start + _BLOCK_EDGES].numpy()
            pd.DataFrame(block).to_csv(fh, header=False, index=False, float_format="%.7g", lineterminator="\n")
    n = int(data.num_nodes)
    columns = {"node": np.arange(n)}
    labels, split = _node_labels(data, n), _node_split(data, n)
    if labels is not None:
        columns["label"] = labels
    if split is not None:
        columns["split"] = np.array(_SPLITS + ("",), dtype=object)[split]
    batch = getattr(data, "batch", None)
    if isinstance(batch, torch.Tensor) and batch.numel() == n:
        columns["graph"] = batch.cpu().numpy()
    with atomic_path(_sidecar(path, fmt)) as tmp:
        pd.DataFrame(columns).to_csv(tmp, index=False)


def _save_parquet(data: Any, path: Path, fmt: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    edge_index, weight = _edge_columns(data)
    fields = [pa.field("src", pa.int64()), pa.field("dst", pa.int64())]
    if weight is not None:
        fields.append(pa.field("weight", pa.float32()))
    schema = pa.schema(fields)
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, max(edge_index.shape[1], 1), _BLOCK_EDGES):
                cols = [pa.array(edge_index[0, start:start + _BLOCK_EDGES].numpy()),
                        pa.array(edge_index[1, start:start + _BLOCK_EDGES].numpy())]
                if weight is not None:
                    cols.append(pa.array(weight[start:start + _BLOCK_EDGES].numpy()))
                writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    n = int(data.num_nodes)
    columns: dict[str, Any] = {"node": pa.array(np.arange(n))}
    labels, split = _node_labels(data, n), _node_split(data, n)
    if labels is not None:
        columns["label"] = pa.array(labels)
    if split is not None:
        columns["split"] = pa.array(np.array(_SPLITS + ("",), dtype=object)[split].tolist())
    x = getattr(data, "x", None)
    if isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[0] == n:
        flat = pa.array(x.detach().cpu().float().numpy().reshape(-1))
        columns["features"] = pa.FixedSizeListArray.from_arrays(flat, int(x.shape[1]))
    with atomic_path(_sidecar(path, fmt)) as tmp:
        pq.write_table(pa.table(columns), tmp)


def _save_npz(data: Any, path: Path, fmt: str) -> None:
    from scipy.sparse import coo_matrix

    edge_index, weight = _edge_columns(data)
    n = int(data.num_nodes)
    values = weight.numpy() if weight is not None else np.ones(edge_index.shape[1], dtype=np.float32)
    adj = coo_matrix((values, (edge_index[0].numpy(), edge_index[1].numpy())), shape=(n, n)).tocsr()
    arrays: dict[str, Any] = {"format": np.array("csr"), "shape": np.array(adj.shape), "data": adj.data,
                              "indices": adj.indices, "indptr": adj.indptr}
    x = getattr(data, "x", None)
    if isinstance(x, torch.Tensor) and x.shape[0] == n:
        arrays["x"] = x.detach().cpu().numpy()
    labels, split = _node_labels(data, n), _node_split(data, n)
    if labels is not None:
        arrays["y"] = labels
    if split is not None:
        arrays["split"] = split
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _save_networkx(data: Any, path: Path, fmt: str) -> None:
    try:
        import networkx as nx
    except ImportError:
        raise ConfigError(f"the {fmt} format needs networkx (pip install networkx)") from None
    n = int(data.num_nodes)
    edge_index, weight = _edge_columns(data)
    g = nx.DiGraph()
    labels, split = _node_labels(data, n), _node_split(data, n)
    for i in range(n):
        attrs: dict[str, Any] = {}
        if labels is not None:
            attrs["label"] = int(labels[i])
        if split is not None and split[i] >= 0:
            attrs["split"] = _SPLITS[split[i]]
        g.add_node(i, **attrs)
    src, dst = edge_index[0].tolist(), edge_index[1].tolist()
    if weight is not None:
        g.add_weighted_edges_from(zip(src, dst, weight.tolist()))
    else:
        g.add_edges_from(zip(src, dst))
    with atomic_path(path) as tmp:
        (nx.write_graphml if fmt == "graphml" else nx.write_gexf)(g, tmp)


# --- reading -----------------------------------------------------------------------------
def load_graph(path: str | os.PathLike[str], fmt: str | None = None) -> Any:
    """Read a graph written by :func:`save_graph` into a PyG ``Data``.

    Raises:
        DataError: If the file is missing, unreadable or not a graph in that format.
    """
    path = Path(path)
    fmt = format_of(path, fmt)
    if not path.is_file():
        raise DataError(f"graph file {path} does not exist")
    try:
        return {"pt": _load_pt, "csv": _load_csv, "parquet": _load_parquet, "npz": _load_npz,
                "graphml": _load_networkx, "gexf": _load_networkx}[fmt](path, fmt)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of a user's file is a DataError
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"cannot read graph file {path} as {fmt}: {reason}") from None


def _data(num_nodes: int, edge_index: torch.Tensor, **attrs: Any) -> Any:
    from torch_geometric.data import Data

    return Data(edge_index=edge_index.long(), num_nodes=int(num_nodes),
                **{k: v for k, v in attrs.items() if v is not None})


def _check_edges(edge_index: torch.Tensor, n: int, path: Path) -> None:
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        raise DataError(f"{path}: edge endpoints must be node indices in 0..{n - 1}")


def _load_pt(path: Path, fmt: str) -> Any:
    from graphforge.io import safe_load

    obj = safe_load(path, what="graph file")
    if not isinstance(obj, dict) or obj.get("format") != GRAPH_FILE_FORMAT or not isinstance(obj.get("tensors"), dict):
        raise DataError(f"{path} is not a graphforge graph file")
    tensors = dict(obj["tensors"])
    edge_index = tensors.pop("edge_index", None)
    if not isinstance(edge_index, torch.Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise DataError(f"{path}: edge_index must be a [2, E] tensor")
    raw = obj.get("num_nodes", 0)
    try:
        n = operator.index(raw)
    except TypeError:
        n = -1
    if isinstance(raw, bool) or n < 0:
        raise DataError(f"{path}: num_nodes must be an integer >= 0, got {raw!r}")
    _check_edges(edge_index, n, path)
    return _data(n, edge_index, **tensors)


def _nodes_frame(path: Path, fmt: str) -> Any:
    import pandas as pd

    side = _sidecar(path, fmt)
    if not side.is_file():
        return None
    return pd.read_csv(side) if fmt == "csv" else pd.read_parquet(side)


def _tensor(column: Any, dtype: Any) -> torch.Tensor:
    """A tensor holding a copy of a table column (pyarrow's arrays are read-only)."""
    return torch.from_numpy(np.array(column, dtype=dtype, copy=True))


def _from_tables(path: Path, fmt: str, edges: Any) -> Any:
    missing = [c for c in ("src", "dst") if c not in edges.columns]
    if missing:
        raise DataError(f"{path} is missing column(s) {', '.join(missing)}: a graph's edge table has columns "
                        f"src,dst[,weight]; found {','.join(map(str, edges.columns)) or 'none'}")
    nodes = _nodes_frame(path, fmt)
    src = _tensor(edges["src"], np.int64)
    dst = _tensor(edges["dst"], np.int64)
    edge_index = torch.stack([src, dst])
    n = len(nodes) if nodes is not None else (int(edge_index.max()) + 1 if edge_index.numel() else 0)
    _check_edges(edge_index, n, path)
    attrs: dict[str, Any] = {}
    if "weight" in edges.columns:
        attrs["edge_weight"] = _tensor(edges["weight"], np.float32)
    if nodes is not None:
        if "label" in nodes.columns:
            attrs["y"] = _tensor(nodes["label"], np.int64)
        if "split" in nodes.columns:
            split = nodes["split"].fillna("").astype(str).to_numpy()
            for s in _SPLITS:
                attrs[f"{s}_mask"] = torch.as_tensor(split == s)
        if "graph" in nodes.columns:
            attrs["batch"] = _tensor(nodes["graph"], np.int64)
        if "features" in nodes.columns:
            attrs["x"] = _tensor(np.stack(nodes["features"].to_numpy()), np.float32)
    return _data(n, edge_index, **attrs)


def _load_csv(path: Path, fmt: str) -> Any:
    import pandas as pd

    return _from_tables(path, fmt, pd.read_csv(path))


def _load_parquet(path: Path, fmt: str) -> Any:
    import pandas as pd

    return _from_tables(path, fmt, pd.read_parquet(path))


def _load_npz(path: Path, fmt: str) -> Any:
    from scipy.sparse import csr_matrix

    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a valid .npz (zip) file")
    with np.load(path, allow_pickle=False) as f:
        adj = csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"])).tocoo()
        attrs: dict[str, Any] = {}
        if "x" in f:
            attrs["x"] = torch.as_tensor(f["x"])
        if "y" in f:
            attrs["y"] = torch.as_tensor(f["y"])
        if "split" in f:
            split = f["split"]
            for i, s in enumerate(_SPLITS):
                attrs[f"{s}_mask"] = torch.as_tensor(split == i)
    edge_index = torch.as_tensor(np.stack([adj.row, adj.col]).astype(np.int64))
    attrs["edge_weight"] = torch.as_tensor(adj.data.astype(np.float32))
    return _data(adj.shape[0], edge_index, **attrs)


def _load_networkx(path: Path, fmt: str) -> Any:
    import networkx as nx

    g = (nx.read_graphml if fmt == "graphml" else nx.read_gexf)(str(path))
    nodes = list(g.nodes)
    index = {v: i for i, v in enumerate(nodes)}
    edges = list(g.edges(data=True))
    edge_index = torch.tensor([[index[u] for u, _, _ in edges], [index[v] for _, v, _ in edges]],
                              dtype=torch.long).reshape(2, -1)
    attrs: dict[str, Any] = {}
    if edges and all("weight" in d for _, _, d in edges):
        attrs["edge_weight"] = torch.tensor([float(d["weight"]) for _, _, d in edges], dtype=torch.float32)
    if nodes and all("label" in g.nodes[v] for v in nodes):
        attrs["y"] = torch.tensor([int(g.nodes[v]["label"]) for v in nodes], dtype=torch.long)
    if nodes and any("split" in g.nodes[v] for v in nodes):
        split = [g.nodes[v].get("split", "") for v in nodes]
        for s in _SPLITS:
            attrs[f"{s}_mask"] = torch.tensor([x == s for x in split])
    return _data(len(nodes), edge_index, **attrs)
