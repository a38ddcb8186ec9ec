// Op schemas of graphforge's native library and the Python module `graphforge._C`.
//
// Kernels register themselves with TORCH_LIBRARY_IMPL in csrc/cpu and csrc/cuda; the
// fake (meta) kernels and autograd formulas are registered from Python in
// graphforge/ops/knn.py.
#include "knn.h"

#include <torch/library.h>

#ifdef TORCH_EXTENSION_NAME
#include <torch/extension.h>
#endif


namespace graphforge {

Metric parse_metric(c10::string_view name) {
  if (name == "l2") return Metric::L2;
  if (name == "cosine") return Metric::Cosine;
  if (name == "l1") return Metric::L1;
  if (name == "linf") return Metric::Linf;
  if (name == "ip") return Metric::IP;
  TORCH_CHECK_VALUE(false, "graphforge::batched_knn: unknown metric '", std::string(name),
                    "'; choose one of l2, cosine, l1, linf, ip");
}

int64_t check_knn_arguments(const at::Tensor& x, const at::Tensor& ptr, const at::Tensor& k) {
  TORCH_CHECK_VALUE(x.dim() == 2, "graphforge::batched_knn: x must be 2-D [N, D], got ",
                    x.dim(), "-D");
  TORCH_CHECK_VALUE(at::isFloatingType(x.scalar_type()),
                    "graphforge::batched_knn: x must be floating point, got ", x.scalar_type());
  TORCH_CHECK_VALUE(ptr.dim() == 1 && ptr.size(0) >= 1 && ptr.scalar_type() == at::kLong,
                    "graphforge::batched_knn: ptr must be a 1-D int64 tensor [B + 1]");
  const int64_t B = ptr.size(0) - 1;
  TORCH_CHECK_VALUE(k.dim() == 1 && k.size(0) == B && k.scalar_type() == at::kLong,
                    "graphforge::batched_knn: k must be a 1-D int64 tensor with one entry per "
                    "set (", B, "), got shape ", k.sizes());
  return B;
}

}  // namespace graphforge

// Output order: dist first, so that generic tooling that sums the outputs (opcheck's
// autograd checks) starts from the floating-point one. graphforge.ops.batched_knn
// returns (edge_index, dist).
TORCH_LIBRARY(graphforge, m) {
  m.def(
      "batched_knn(Tensor x, Tensor ptr, Tensor k, str metric=\"l2\", bool loop=False)"
      " -> (Tensor dist, Tensor edge_index)");
  // The k smallest entries of each row, sorted by (value, column) (CPU; see knn_cpu.cpp).
  m.def("smallest_k(Tensor scores, int k) -> (Tensor values, Tensor indices)");
  // The k smallest of bias[j] + alpha * dots[i, j] (int32), sorted by (value, column) (CPU).
  m.def("smallest_k_affine(Tensor dots, Tensor bias, int alpha, int k) -> (Tensor values, Tensor indices)");
  // A dropout mask (0 or 1 / (1 - p)) shaped like `like`, from a counter-based hash of seed (CPU).
  m.def("dropout_mask(Tensor like, float p, int seed) -> Tensor");
}

#ifdef TORCH_EXTENSION_NAME
namespace {
bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

int64_t cuda_version() {
#ifdef WITH_CUDA
  return graphforge::cuda_build_version();
#else
  return -1;
#endif
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "graphforge native ops (registered as torch.ops.graphforge.*)";
  m.def("has_cuda", &has_cuda, "True when the CUDA kernels were compiled in.");
  m.def("cuda_version", &cuda_version,
        "CUDA version the extension was built with (e.g. 13000), or -1 without CUDA.");
}
#endif
