"""Core types shared by the engine and every plugin."""

from graphforge.core.converter import Converter
from graphforge.core.data import DataSplits, InputSpec, Split
from graphforge.core.dataset import Dataset
from graphforge.core.model import FitModel, Model

__all__ = ["Converter", "DataSplits", "Dataset", "FitModel", "InputSpec", "Model", "Split"]
