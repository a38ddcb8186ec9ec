"""Reusable graph layers (edge-weight aware) used by the built-in models."""

from graphforge.nn.conv import WeightedGINConv, WeightedSAGEConv

__all__ = ["WeightedGINConv", "WeightedSAGEConv"]
