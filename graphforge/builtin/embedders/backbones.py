"""torchvision CNN backbones as embedders: ``resnet18``, ``resnet50``, ``vgg16``, ...

Each architecture is registered under its torchvision name. The weights come from
a local file, from torchvision's pretrained weights (downloaded once into the torch
hub cache), or — only when asked for — from a seeded random initialisation.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import torch
from torch import nn
from torch.nn import functional as F

from graphforge.checks import check_int
from graphforge.core.data import InputSpec
from graphforge.core.embedder import Embedder
from graphforge.errors import ConfigError, DataError, GraphforgeError

log = logging.getLogger("graphforge")

#: Registered architectures (torchvision names) and what they are.
from graphforge.builtin.embedders import ARCHITECTURES  # noqa: E402  (names live with the plugin)

#: Which activations to return (see :class:`Backbone`).
LAYERS = ("penultimate", "pooled")
#: ``weights`` values naming torchvision's recommended pretrained weights.
PRETRAINED_ALIASES = ("default", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_IMAGE_SIZE = 32
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def head_name(model: nn.Module) -> str:
    """Return the name of the classifier's last ``nn.Linear`` (``fc``, ``classifier.6``...)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no linear classifier")
    return names[-1]


def _trunk(model: nn.Module) -> nn.Module:
    """The convolutional part of ``model`` (everything before global pooling)."""
    features = getattr(model, "features", None)
    if isinstance(features, nn.Module):
        return features
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")  # ResNets
    return nn.Sequential(*(getattr(model, n) for n in names))


class FeatureNet(nn.Module):
    """A torchvision classifier cut before its last linear layer, with ImageNet preprocessing.

    Args:
        model: A torchvision classification model (its weights already loaded).
        layer: ``"penultimate"`` (the input of the last linear layer) or ``"pooled"``
            (the last convolutional feature map, averaged over space).
        image_size: Side of the square the images are resized to.

    Shapes:
        input ``[N, 1 or 3, H, W]`` float in [0, 1], output ``[N, D]``.
    """

    def __init__(self, model: nn.Module, layer: str, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        if layer == "pooled":
            self.body: nn.Module = nn.Sequential(_trunk(model), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        else:
            parent_name, _, leaf = head_name(model).rpartition(".")
            setattr(model.get_submodule(parent_name), leaf, nn.Identity())
            self.body = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return self.body((x - self.mean) / self.std).flatten(1)


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path``: a raw one, or a checkpoint dict holding it.

    ``state_dict`` / ``model_state_dict`` / ``model`` entries are unwrapped and
    ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes stripped.

    Raises:
        DataError: If the file cannot be read or holds no state dict.
    """
    from graphforge.io import safe_load

    try:
        obj = safe_load(path, what="weights file")
    except DataError as exc:
        raise DataError(
            f"cannot read weights file {path}: {exc.reason} (it must be a state dict saved with "
            "torch.save(model.state_dict(), path); a whole pickled model is not loaded)"
        ) from None
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        what = f"keys {sorted(map(str, obj))[:5]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise DataError(
            f"weights file {path} holds no state dict ({what}); save one with "
            "torch.save(model.state_dict(), path)"
        )
    return {_strip_prefixes(str(k)): v for k, v in obj.items()}


def load_weights_file(model: nn.Module, path: Path, arch: str) -> None:
    """Load the state dict in ``path`` into ``model``; the classifier's last layer is optional.

    Raises:
        DataError: Naming the file and the first missing or unexpected keys.
    """
    state = read_state_dict(path)
    head = head_name(model) + "."
    state = {k: v for k, v in state.items() if not k.startswith(head)}  # discarded anyway
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = " ".join(str(exc).split())
        raise DataError(f"weights file {path} does not fit {arch}: {detail[:500]}") from exc
    missing = [k for k in missing if not k.startswith(head)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
        raise DataError(
            f"weights file {path} does not fit {arch}: {'; '.join(parts)}; is it a {arch} state dict?"
        )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Backbone(Embedder):
    """Features of a torchvision CNN (subclassed once per architecture, see :data:`ARCHITECTURES`).

    Images are scaled to [0, 1], grey images repeated to 3 channels, resized to
    ``image_size`` squared (bilinear, antialiased) and normalised with the ImageNet
    mean and standard deviation; the network runs in eval mode without gradients.

    Args:
        weights (str or path): Required. A local file holding a state dict (a raw one,
            or a checkpoint with a ``state_dict`` / ``model_state_dict`` / ``model``
            entry; ``module.`` prefixes are stripped; the last classifier layer may be
            missing or of any size); ``"imagenet"`` / ``"default"`` (torchvision's
            recommended pretrained weights, downloaded once into the torch hub cache) or
            the name of another of its weights (``"IMAGENET1K_V1"``); or ``"random"``
            for an untrained, seeded network.
        layer (str, optional): ``"penultimate"``: the input of the classifier's last
            linear layer (VGG's 4096-d fc7, ResNet's pooled 512/2048-d features);
            ``"pooled"``: the last convolutional feature map averaged over space.
            (default: ``"penultimate"``)
        image_size (int, optional): Side the images are resized to, at least 32.
            (default: ``224``)
        batch_size (int, optional): Images per forward pass; ``None`` takes the caller's.
            (default: ``None``)
        seed (int, optional): Seed of the random initialisation (``weights="random"``).
            (default: ``0``)

    Shapes:
        input ``[N, 1 or 3, H, W]`` images, output ``[N, D]``.
    """

    arch: ClassVar[str] = ""
    inputs = frozenset({"images"})
    contract_options: ClassVar[dict[str, Any]] = {"weights": "random", "image_size": MIN_IMAGE_SIZE}

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        layer: str = "penultimate",
        image_size: int = 224,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if weights is None:
            raise ConfigError(
                f"embedder {self.arch!r} needs weights: -o weights=/path/to/state_dict.pth (a local file), "
                "weights=imagenet (torchvision's pretrained weights; downloaded once, needs internet the "
                "first time) or weights=random (an untrained network, on purpose)"
            )
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {', '.join(LAYERS)}, got {layer!r}")
        check_int(image_size, "image_size", minimum=MIN_IMAGE_SIZE)
        check_int(batch_size, "batch_size", minimum=1, optional=True)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        self.weights = weights if isinstance(weights, str) else os.fspath(weights)
        self.layer = layer
        self.image_size = image_size
        self.batch_size = batch_size
        self.seed = seed
        self._source, self._pretrained, self._path = self._resolve_weights(self.weights)
        self._net: FeatureNet | None = None
        self._dim: int | None = None
        self._sha256: tuple[tuple[int, int], str] | None = None

    def _resolve_weights(self, weights: str) -> tuple[str, Any, Path | None]:
        """Return ``(source, torchvision weights or None, file or None)``."""
        if weights.lower() == "random":
            return "random", None, None
        from torchvision.models import get_model_weights

        enum = get_model_weights(self.arch)
        if weights.lower() in PRETRAINED_ALIASES:
            return "torchvision", enum.DEFAULT, None
        by_name = {m.name.lower(): m for m in enum}
        full_prefix = f"{enum.__name__}.".lower()
        name = weights.lower().removeprefix(full_prefix)
        if name in by_name:
            return "torchvision", by_name[name], None
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"embedder {self.arch!r}: weights file {path} not found; weights must be a local state-dict "
                f"file, 'imagenet' (or one of {', '.join(m.name for m in enum)}) or 'random'"
            )
        return "file", None, path

    # ------------------------------------------------------------------ contract
    def output_dim(self, spec: InputSpec) -> int:
        """Return the feature size, found by a forward pass on the meta device (no compute)."""
        self.check_input(spec)
        if self._dim is None:
            from torchvision.models import get_model

            with torch.device("meta"):
                net = FeatureNet(get_model(self.arch, weights=None), self.layer, self.image_size).eval()
                out = net(torch.empty(1, 3, self.image_size, self.image_size))
            self._dim = int(out.shape[1])
        return self._dim

    def check_input(self, spec: InputSpec) -> None:
        """Take images with 1 (grey) or 3 (RGB) channels."""
        super().check_input(spec)
        if len(spec.shape) != 3 or spec.shape[0] not in (1, 3):
            raise ConfigError(
                f"embedder {self.registry_name()!r} takes images with 1 or 3 channels [C, H, W], "
                f"got samples of shape {spec.shape}"
            )

    def cache_key(self) -> dict[str, Any]:
        """Architecture, layer, image size and the weights' identity (a file by its SHA-256)."""
        key = super().cache_key()
        options = key["options"]
        options.pop("batch_size", None)  # does not change the vectors
        options.pop("seed", None)
        options["arch"] = self.arch
        if self._source == "random":
            options["weights"] = {"random": self.seed}
        elif self._source == "torchvision":
            options["weights"] = {"torchvision": f"{type(self._pretrained).__name__}.{self._pretrained.name}"}
        else:
            options["weights"] = {"sha256": self._weights_sha256()}
        return key

    def _weights_sha256(self) -> str:
        assert self._path is not None
        try:
            stat = self._path.stat()
        except OSError as exc:
            raise DataError(f"weights file {self._path} cannot be read: {exc}") from exc
        stamp = (stat.st_size, stat.st_mtime_ns)
        if self._sha256 is None or self._sha256[0] != stamp:
            self._sha256 = (stamp, _file_sha256(self._path))
        return self._sha256[1]

    # ------------------------------------------------------------------ network
    def network(self) -> FeatureNet:
        """Return the feature network (built and its weights loaded on first use), in eval mode."""
        if self._net is None:
            self._net = FeatureNet(self._classifier(), self.layer, self.image_size).eval()
        return self._net

    def _classifier(self) -> nn.Module:
        from torchvision.models import get_model

        if self._source == "torchvision":
            return self._pretrained_classifier()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = get_model(self.arch, weights=None)
        if self._source == "file":
            assert self._path is not None
            load_weights_file(model, self._path, self.arch)
            log.info("embedder %s: weights from %s", self.arch, self._path)
        else:
            log.info("embedder %s: random weights (seed %d), as asked", self.arch, self.seed)
        return model

    def _pretrained_classifier(self) -> nn.Module:
        from torchvision.models import get_model

        weights = self._pretrained
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
        was_cached = cached.is_file()
        if not was_cached:
            log.info("embedder %s: downloading %s to %s", self.arch, weights.url, cached)
        try:
            with contextlib.redirect_stdout(sys.stderr):  # torch.hub prints to stdout; keep --json clean
                return get_model(self.arch, weights=weights, progress=False)
        except GraphforgeError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if was_cached:
                raise DataError(
                    f"torchvision weights file {cached} for {self.arch} cannot be loaded ({reason}); delete it "
                    f"to download it again, or pass a local file with weights=/path/to/state_dict.pth"
                ) from exc
            raise DataError(
                f"cannot download {self.arch} weights {type(weights).__name__}.{weights.name} from {weights.url} "
                f"({reason}). Offline, fetch that file elsewhere and put it at {cached} (the torch hub cache; "
                f"TORCH_HOME moves it), or pass a local state dict with weights=/path/to/file.pth"
            ) from exc

    def embed(self, x: torch.Tensor, device: torch.device | str, batch_size: int) -> torch.Tensor:
        """Embed images ``x`` ``[N, C, H, W]`` (uint8 or float in [0, 1]) in batches on ``device``."""
        self.check_input(InputSpec("images", tuple(int(s) for s in x.shape[1:])))
        device = torch.device(device)
        step = self.batch_size or batch_size
        net = self.network().to(device)
        outs = []
        with torch.no_grad():
            for start in range(0, len(x), step):
                batch = x[start:start + step].to(device)
                batch = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
                outs.append(net(batch).float().cpu())
        if not outs:
            return torch.empty(0, self.output_dim(InputSpec("images", tuple(x.shape[1:]))))
        return torch.cat(outs)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"Backbone(arch={self.arch!r}, {opts})"


def _backbone_class(arch: str) -> type[Backbone]:
    cls_name = "Backbone_" + arch
    doc = f"{ARCHITECTURES[arch]} from torchvision as an embedder.\n\n" + (Backbone.__doc__ or "").split("\n", 2)[2]
    cls = type(cls_name, (Backbone,), {"arch": arch, "name": arch, "__doc__": doc, "__module__": __name__})
    cls.__qualname__ = cls_name
    return cls


#: One :class:`Backbone` subclass per architecture, by name.
BACKBONES: dict[str, type[Backbone]] = {arch: _backbone_class(arch) for arch in ARCHITECTURES}
globals().update({cls.__name__: cls for cls in BACKBONES.values()})  # picklable by name
