"""A DGCNN-style dynamic EdgeConv model plugin for graphforge."""

from graphforge_edgeconv.model import DGCNN, DGCNNNet

__all__ = ["DGCNN", "DGCNNNet"]
__version__ = "0.1.0"
