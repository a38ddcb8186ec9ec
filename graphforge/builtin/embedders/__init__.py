"""Built-in embedder plugins: ``pixels``, ``trained`` and torchvision backbones.

This module is the plugin: it registers the embedders by location (imported on first use).
"""

from __future__ import annotations

from typing import Any

from graphforge.hookspecs import hookimpl

#: The torchvision backbones (``graphforge.builtin.embedders.backbones``), by registry name.
ARCHITECTURES: dict[str, str] = {
    "resnet18": "ResNet-18 (512-d features)",
    "resnet34": "ResNet-34 (512-d features)",
    "resnet50": "ResNet-50 (2048-d features)",
    "resnet101": "ResNet-101 (2048-d features)",
    "vgg11": "VGG-11 (4096-d fc7 features, or 512-d pooled)",
    "vgg16": "VGG-16 (4096-d fc7 features, or 512-d pooled)",
    "vgg19": "VGG-19 (4096-d fc7 features, or 512-d pooled)",
    "densenet121": "DenseNet-121 (1024-d features)",
    "mobilenet_v3_small": "MobileNetV3-Small (1024-d features, or 576-d pooled)",
    "mobilenet_v3_large": "MobileNetV3-Large (1280-d features, or 960-d pooled)",
    "efficientnet_b0": "EfficientNet-B0 (1280-d features)",
    "convnext_tiny": "ConvNeXt-Tiny (768-d features)",
}


@hookimpl
def register_embedders(register: Any) -> None:
    """Register the built-in embedders."""
    here = __name__
    register("pixels", f"{here}.pixels:Pixels", "raw pixels (or vectors) flattened, uint8 scaled to [0, 1]")
    register("trained", f"{here}.trained:Trained",
             "penultimate features of a network graphforge trained (-o embedder_options={run: DIR})")
    for arch, description in ARCHITECTURES.items():
        register(arch, f"{here}.backbones:Backbone_{arch}", f"{description}; weights=FILE, imagenet or random")
