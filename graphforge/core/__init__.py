"""Core types shared by the engine and every plugin."""

from graphforge.core.converter import Converter
from graphforge.core.data import DataSplits, InputSpec, Split
from graphforge.core.dataset import Dataset
from graphforge.core.embedder import Embedder
from graphforge.core.model import FitModel, GraphFitModel, Model

__all__ = ["Converter", "DataSplits", "Dataset", "Embedder", "FitModel", "GraphFitModel", "InputSpec", "Model", "Split"]
