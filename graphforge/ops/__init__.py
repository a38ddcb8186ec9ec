"""Native graph ops: batched KNN with a different k per point set, and row-wise selection.

``batched_knn`` / ``dense_batched_knn`` run the C++ / CUDA kernels of ``graphforge._C``
(registered as ``torch.ops.graphforge.batched_knn``) and fall back to the pure-PyTorch
``batched_knn_reference`` when the extension is not built; ``knn_backend()`` says which.
``smallest_k`` (``torch.ops.graphforge.smallest_k`` on the CPU) selects the k smallest
scores of each row for the dataset-scale search in :mod:`graphforge.neighbors`;
``smallest_k_affine`` does it for ``bias + alpha * dots`` of an int32 matrix (the search's
int8 candidate pass).
"""

from graphforge.ops.knn import METRICS, batched_knn, dense_batched_knn, knn_backend
from graphforge.ops.reference import batched_knn_reference
from graphforge.ops.select import (
    merge_smallest_k,
    smallest_k,
    smallest_k_affine,
    smallest_k_affine_reference,
    smallest_k_reference,
)

__all__ = [
    "METRICS",
    "batched_knn",
    "batched_knn_reference",
    "dense_batched_knn",
    "knn_backend",
    "merge_smallest_k",
    "smallest_k",
    "smallest_k_affine",
    "smallest_k_affine_reference",
    "smallest_k_reference",
]
