"""``trained``: embeddings from a network graphforge trained (the input of its last linear layer)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from graphforge.core.data import InputSpec
from graphforge.core.embedder import Embedder
from graphforge.errors import ConfigError, DataError


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Trained(Embedder):
    """The penultimate features of a finished graphforge run's network.

    A classifier trained on the training split (``graphforge run --model cnn ...``) places
    images where distances follow the classes; its *penultimate* features — the input of the
    network's last ``nn.Linear`` layer — are a learnt embedding for a similarity graph (as
    the original pipeline used a pretrained VGG16). The run must be a gradient run of a
    per-sample converter on samples of the same shape (``cnn``, ``mlp``, ``dyn_knn`` + a GNN).

    Args:
        run (str): The run directory (its ``checkpoint.pt`` is loaded safely through
            :func:`graphforge.load_run`).

    Shapes:
        input: the run's samples ``[N, ...]`` as the dataset gives them; output ``[N, F]``
        with ``F`` the input width of the last linear layer.
    """

    name = "trained"
    inputs = frozenset({"images"})
    #: The contract check embeds digits-sized images with a one-epoch mlp run (see contract_setup).
    example_shapes = {"images": (1, 8, 8)}

    @classmethod
    def contract_setup(cls, workdir: Path) -> dict[str, Any]:
        """Train a one-epoch ``mlp`` on the embedded digits into ``workdir`` and embed with it."""
        import graphforge

        run = graphforge.run("none", "mlp", "digits", epochs=1, out=str(workdir / "run"), plots=False,
                             limit_train=200, options={"hidden": 16})
        return {"run": str(run.run_dir)}

    def __init__(self, run: str | None = None) -> None:
        if not run or not isinstance(run, (str, Path)):
            raise ConfigError("embedder 'trained' needs the run directory: -o 'embedder_options={run: runs/...}'")
        self.run = str(Path(run).expanduser().resolve())
        self._net: nn.Module | None = None
        self._last: nn.Linear | None = None
        self._digest: str | None = None
        self._spec: InputSpec | None = None

    def _load(self) -> tuple[nn.Module, nn.Linear]:
        if self._net is None:
            from graphforge.api import load_run

            trained = load_run(self.run)
            if trained.net is None or trained._transductive:
                raise ConfigError(f"embedder 'trained': run {self.run} has no per-sample network "
                                  f"({trained.config.converter} + {trained.config.model}); train a cnn, mlp or GNN run")
            linears = [m for m in trained.net.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise ConfigError(f"embedder 'trained': the network of run {self.run} has no linear layer")
            self._net, self._last = trained.net.eval(), linears[-1]
            self._spec = trained.spec
        assert self._last is not None
        return self._net, self._last

    def check_input(self, spec: InputSpec) -> None:
        """Images of the shape the run was trained on."""
        super().check_input(spec)
        self._load()
        if self._spec is not None and tuple(spec.shape) != tuple(self._spec.shape):
            raise ConfigError(f"embedder 'trained': run {self.run} was trained on samples of shape "
                              f"{tuple(self._spec.shape)}, the dataset gives {tuple(spec.shape)}")

    def output_dim(self, spec: InputSpec) -> int:
        """The input width of the run's last linear layer."""
        self.check_input(spec)
        return int(self._load()[1].in_features)

    @torch.no_grad()
    def embed(self, x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
        """Run the network over ``x`` in batches and keep what enters its last linear layer."""
        net, last = self._load()
        net = net.to(device)
        captured: list[torch.Tensor] = []
        handle = last.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().float().cpu()))
        try:
            for start in range(0, len(x), batch_size):
                before = len(captured)
                net(x[start:start + batch_size].to(device))
                if len(captured) != before + 1:
                    raise DataError(f"embedder 'trained': the last linear layer of run {self.run} ran "
                                    f"{len(captured) - before} times for one batch; it cannot be used as an embedding")
        finally:
            handle.remove()
            net.to("cpu")
        return torch.cat(captured) if captured else torch.zeros(0, int(last.in_features))

    def cache_key(self) -> dict[str, Any]:
        """The run directory and the checksum of its best checkpoint."""
        if self._digest is None:
            ckpt = Path(self.run) / "checkpoint.pt"
            if not ckpt.is_file():
                raise DataError(f"embedder 'trained': {ckpt} is missing")
            self._digest = _file_digest(ckpt)
        return {**super().cache_key(), "checkpoint_sha256": self._digest}
