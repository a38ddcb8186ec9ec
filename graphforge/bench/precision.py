"""Training and inference throughput at fp32 against bf16 mixed precision (``--precision``).

Both precisions run the same network on the same synthetic batch in one process, taking
turns step by step, so the ratio is measured on one machine at one moment; the machine's CPU flags go with the
figures (bf16 only pays where the CPU has ``avx512_bf16`` / AMX, or on a bf16 GPU).
Synthetic images are enough for throughput: the work per image does not depend on the
pixel values (for ``dyn_knn`` the k head only changes how many edges are kept).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from graphforge.api import get_converter, get_model
from graphforge.bench.timing import interleaved_median_seconds, network_steps
from graphforge.core.data import InputSpec
from graphforge.engine.families import GradientFamily, family_of
from graphforge.engine.precision import PRECISIONS, check_precision, has_native_bf16
from graphforge.errors import ConfigError


@dataclass
class PrecisionBenchResult:
    """Throughput of one precision."""

    precision: str
    device: str
    train_images_per_s: float
    infer_images_per_s: float


def run_precision_benchmark(
    *,
    converter: str = "none",
    model: str = "cnn",
    image_size: int = 28,
    channels: int = 1,
    batch_size: int = 64,
    num_classes: int = 10,
    steps: int = 20,
    warmup: int = 3,
    device: str = "cpu",
    precisions: tuple[str, ...] = PRECISIONS,
    converter_options: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> list[PrecisionBenchResult]:
    """Measure images/s of training steps and inference batches at each precision.

    Args:
        converter: Per-sample converter (``none`` for a plain network such as ``cnn``).
        model: Model plugin with a network.
        image_size: Height and width of the synthetic images.
        channels: Image channels.
        batch_size: Images per step (inference batches are the same size).
        num_classes: Classes of the classifier head.
        steps: Timed steps per figure and precision, the precisions taking turns (the
            median is reported).
        warmup: Untimed steps first.
        device: ``"cpu"`` or ``"cuda"``.
        precisions: Which precisions to measure (``fp32``, ``bf16``).
        converter_options: Options of the converter.
        model_options: Options of the model.
        progress: Called with a line of progress text.

    Returns:
        One :class:`PrecisionBenchResult` per precision, in the order asked.
    """
    precisions = tuple(dict.fromkeys(check_precision(p) for p in precisions))
    dev = torch.device(device)
    spec = InputSpec("images", (channels, image_size, image_size))
    conv = get_converter(converter, **(converter_options or {}))
    if conv.level != "sample":
        raise ConfigError(f"bench precision times per-sample networks; converter {converter!r} builds one graph "
                          "over the whole dataset")
    conv.check_input(spec)
    plugin = get_model(model, **(model_options or {}))
    if not isinstance(family_of(plugin), GradientFamily):
        raise ConfigError(f"model {model!r} has no network to train (it is fitted), so precision does not apply")
    plugin.check_input(conv.output_spec(spec))
    train_steps, infer_steps = {}, {}
    for precision in precisions:
        torch.manual_seed(0)  # the same network and batch for every precision
        net = nn.Sequential(conv.build(spec), plugin.build(conv.output_spec(spec), num_classes)).to(dev)
        x = torch.randn(batch_size, *spec.shape, device=dev)
        y = torch.randint(0, num_classes, (batch_size,), device=dev)
        train_steps[precision], infer_steps[precision] = network_steps(net, x, y, precision)
    # The precisions take turns step by step, so the machine's noise falls on both alike.
    progress(f"bench precision: {converter} + {model} on {device}: training steps ({', '.join(precisions)}) ...")
    t_train = interleaved_median_seconds(train_steps, steps, warmup, dev)
    progress(f"bench precision: {converter} + {model} on {device}: inference ({', '.join(precisions)}) ...")
    t_infer = interleaved_median_seconds(infer_steps, steps, warmup, dev)
    results = [PrecisionBenchResult(p, device, batch_size / t_train[p], batch_size / t_infer[p]) for p in precisions]
    return results


def format_table(results: list[PrecisionBenchResult], title: str) -> str:
    """A text table of images/s with ratios against the fp32 row (when measured)."""
    base = next((r for r in results if r.precision == "fp32"), None)
    lines = [title, f"{'precision':<10} {'device':<6} {'train img/s':>12} {'infer img/s':>12} {'train x':>8} {'infer x':>8}"]
    for r in results:
        tx = r.train_images_per_s / base.train_images_per_s if base else float("nan")
        ix = r.infer_images_per_s / base.infer_images_per_s if base else float("nan")
        lines.append(f"{r.precision:<10} {r.device:<6} {r.train_images_per_s:12.1f} {r.infer_images_per_s:12.1f} "
                     f"{tx:8.2f} {ix:8.2f}")
    native = {r.device: has_native_bf16(torch.device(r.device)) for r in results}
    lines.append("x = speed-up over fp32 in the same run; native bf16: "
                 + ", ".join(f"{d} {'yes' if v else 'no'}" for d, v in native.items()))
    return "\n".join(lines)
