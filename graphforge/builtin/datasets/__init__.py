"""Built-in dataset plugins: ``digits``, the MNIST family, ``cifar10``, ``image-folder`` and
``embeddings``.

This module is the plugin: it registers every built-in dataset by *location*, so listing
them imports nothing heavy; each class is imported when a run needs it.
"""

from __future__ import annotations

from typing import Any

from graphforge.hookspecs import hookimpl

_MNIST_FAMILY = (
    ("mnist", "Mnist", "MNIST handwritten digits (60,000 train / 10,000 test, 10 classes)"),
    ("fashion-mnist", "FashionMnist", "Fashion-MNIST clothing images (60,000 train / 10,000 test, 10 classes)"),
    ("kmnist", "Kmnist", "Kuzushiji-MNIST cursive hiragana (60,000 train / 10,000 test, 10 classes)"),
    ("emnist-letters", "EmnistLetters",
     "EMNIST letters a..z (124,800 train / 20,800 test, 26 classes; labels 1..26 -> 0..25)"),
    ("emnist-balanced", "EmnistBalanced", "EMNIST balanced: digits and letters, 47 classes with equal counts"),
    ("emnist-bymerge", "EmnistByMerge", "EMNIST by merge: digits and letters, 47 classes (look-alike cases merged)"),
    ("emnist-byclass", "EmnistByClass", "EMNIST by class: digits, upper- and lowercase letters, 62 classes"),
    ("emnist-digits", "EmnistDigits", "EMNIST digits (240,000 train / 40,000 test, 10 classes)"),
    ("emnist-mnist", "EmnistMnist", "EMNIST's MNIST-sized digits (60,000 train / 10,000 test, 10 classes)"),
)


@hookimpl
def register_datasets(register: Any) -> None:
    """Register the built-in datasets."""
    here = __name__
    register("digits", f"{here}.digits:Digits", "scikit-learn's bundled 8x8 digits (offline default)")
    for name, cls, description in _MNIST_FAMILY:
        register(name, f"{here}.mnist:{cls}", description)
    register("cifar10", f"{here}.cifar10:Cifar10", "CIFAR-10 colour images, 32x32, 10 classes (torchvision files)")
    register("image-folder", f"{here}.image_folder:ImageFolder",
             "images in one sub-folder per class (PIL), resized to size x size")
    register("embeddings", f"{here}.embeddings:Embeddings",
             "feature vectors from a CSV / Parquet / NPY / NPZ table with a label column")
