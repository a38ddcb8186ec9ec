"""Native graph ops: batched KNN with a different k per point set.

``batched_knn`` / ``dense_batched_knn`` run the C++ / CUDA kernels of ``graphforge._C``
(registered as ``torch.ops.graphforge.batched_knn``) and fall back to the pure-PyTorch
``batched_knn_reference`` when the extension is not built; ``knn_backend()`` says which.
"""

from graphforge.ops.knn import METRICS, batched_knn, dense_batched_knn, knn_backend
from graphforge.ops.reference import batched_knn_reference

__all__ = ["METRICS", "batched_knn", "batched_knn_reference", "dense_batched_knn", "knn_backend"]
