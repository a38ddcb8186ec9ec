// Shared declarations of graphforge's batched KNN op (CPU and CUDA kernels).
//
// Semantics (identical in every backend and in graphforge/ops/reference.py):
//   * x [N_total, D] floating point; ptr [B + 1] int64 CSR offsets of the B point sets;
//     k [B] int64, the number of neighbours each set asks for.
//   * Per set b, k is clamped to the points available: min(k_b, n_b - 1) without
//     self-loops (self excluded by index, not by distance), min(k_b, n_b) with them.
//   * Output edges are grouped by query (ascending global index); within a query they are
//     sorted by (distance, neighbour index). edge_index[0] = neighbour, edge_index[1] = query
//     (PyG's source-to-target convention); dist[e] is the metric distance of edge e.
//   * Distances: l2 = euclidean distance (not squared), cosine = 1 - cos(a, b) (a zero
//     vector has cos = 0), l1 = sum |a - b|, linf = max |a - b|, ip = -<a, b> (negative
//     inner product, so that smaller is nearer). Accumulation is in fp32 (fp64 for fp64).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <string>
#include <tuple>

namespace graphforge {

enum class Metric : int { L2 = 0, Cosine = 1, L1 = 2, Linf = 3, IP = 4 };

// Throws (TORCH_CHECK_VALUE) on an unknown name.
Metric parse_metric(c10::string_view name);

// Checks the shapes and dtypes every backend needs (x [N, D] floating, ptr [B + 1] int64,
// k [B] int64) and returns B. Devices are checked by each backend. (csrc/graphforge.cpp)
int64_t check_knn_arguments(const at::Tensor& x, const at::Tensor& ptr, const at::Tensor& k);

// CPU kernel (csrc/cpu/knn_cpu.cpp); returns (dist, edge_index) like the op. Exposed so
// that the C++ test can call it directly.
std::tuple<at::Tensor, at::Tensor> batched_knn_cpu(const at::Tensor& x,
                                                   const at::Tensor& ptr,
                                                   const at::Tensor& k,
                                                   c10::string_view metric,
                                                   bool loop);

// Row-wise k smallest entries of a 2-D float32 / float64 CPU tensor, sorted by (value,
// column): (values [M, k], indices [M, k] int64). (csrc/cpu/knn_cpu.cpp)
std::tuple<at::Tensor, at::Tensor> smallest_k_cpu(const at::Tensor& scores, int64_t k);

// Row-wise k smallest of bias[j] + alpha * dots[i, j] for int32 dots [M, N] and bias [N]
// (no overflow checks: the caller bounds the scores): (values [M, k] int32, indices [M, k]
// int64), sorted by (value, column). (csrc/cpu/knn_cpu.cpp)
std::tuple<at::Tensor, at::Tensor> smallest_k_affine_cpu(const at::Tensor& dots, const at::Tensor& bias,
                                                         int64_t alpha, int64_t k);

// A dropout mask shaped like `like`: 0 or 1 / (1 - p), kept with probability 1 - p, from a
// counter-based hash of (seed, index): the same for any number of threads. (csrc/cpu/knn_cpu.cpp)
at::Tensor dropout_mask_cpu(const at::Tensor& like, double p, int64_t seed);

#ifdef WITH_CUDA
// CUDA kernel (csrc/cuda/knn_cuda.cu) and the CUDA version it was compiled with.
std::tuple<at::Tensor, at::Tensor> batched_knn_cuda(const at::Tensor& x,
                                                    const at::Tensor& ptr,
                                                    const at::Tensor& k,
                                                    c10::string_view metric,
                                                    bool loop);
int64_t cuda_build_version();
#endif

}  // namespace graphforge
