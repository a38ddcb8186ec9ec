// CPU kernel of graphforge::batched_knn (semantics in csrc/knn.h).
//
// Work is split into items (one point set, a block of up to kQueryBlock queries); threads
// take items from a shared counter, largest first, so mixed set sizes stay balanced. Per
// item, candidates are visited in blocks of kCandBlock:
//   * l2 / cosine / ip: one GEMM (ATen mm -> MKL/OpenBLAS) gives the query x candidate
//     inner products; l2 works on per-set centred points (centred in fp64) to avoid the
//     cancellation of ||a||^2 + ||b||^2 - 2ab, and the distances of the k selected
//     neighbours are recomputed exactly from the original points;
//   * l1 / linf: a direct blocked kernel over a per-set transposed copy, vectorised over
//     candidates (compiled for AVX-512 / AVX2 / baseline and picked at run time).
// Each query keeps its k best (distance, index) pairs in a sorted array (insertion) for
// small k or a binary max-heap for large k. Candidates arrive in ascending index order, so a
// candidate that ties the current k-th distance never displaces it: ties go to the lower
// index. Output slots come from a prefix sum over sets (n_b * k_b each): no padding to
// k_max and no masking.
#include "../knn.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

namespace graphforge {
namespace {

constexpr int64_t kQueryBlock = 128;   // queries per work item
constexpr int64_t kCandBlock = 1024;   // candidates per distance block
constexpr int64_t kSortedMaxK = 48;    // above this, a heap instead of a sorted array
// Sets up to this size skip the BLAS call (whose fixed cost dominates for tiny products)
// and use the direct kernel on a transposed copy.
constexpr int64_t kSmallSet = 64;

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define GF_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#define GF_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define GF_MULTIVERSION
#define GF_ALWAYS_INLINE inline
#endif

template <typename T>
struct Entry {
  T d;
  int64_t i;
};

template <typename T>
inline bool entry_less(const Entry<T>& a, const Entry<T>& b) {
  return a.d < b.d || (a.d == b.d && a.i < b.i);
}

// rows[q * ldr + j] = reduce_d |a[q * lda + d] - t[d * ldt + j]|  (sum for l1, max for linf).
// kMode: 0 = sum |a - b| (l1), 1 = max |a - b| (linf), 2 = sum a * b (small-set GEMM).
template <typename T, int kMode>
GF_ALWAYS_INLINE void direct_rows_impl(const T* a, int64_t lda, int64_t nq, int64_t D,
                                       const T* t, int64_t ldt, int64_t nc, T* rows,
                                       int64_t ldr) {
  auto step = [](T acc, T a, T b) {
    if constexpr (kMode == 2) return acc + a * b;
    const T v = std::abs(a - b);
    if constexpr (kMode == 1) return acc > v ? acc : v;
    return acc + v;
  };
  int64_t q = 0;
  for (; q + 4 <= nq; q += 4) {
    T* __restrict__ r0 = rows + q * ldr;
    T* __restrict__ r1 = r0 + ldr;
    T* __restrict__ r2 = r1 + ldr;
    T* __restrict__ r3 = r2 + ldr;
    for (int64_t j = 0; j < nc; ++j) r0[j] = r1[j] = r2[j] = r3[j] = T(0);
    const T* a0 = a + q * lda;
    for (int64_t d = 0; d < D; ++d) {
      const T v0 = a0[d], v1 = a0[lda + d], v2 = a0[2 * lda + d], v3 = a0[3 * lda + d];
      const T* __restrict__ tr = t + d * ldt;
      for (int64_t j = 0; j < nc; ++j) {
        const T b = tr[j];
        r0[j] = step(r0[j], v0, b);
        r1[j] = step(r1[j], v1, b);
        r2[j] = step(r2[j], v2, b);
        r3[j] = step(r3[j], v3, b);
      }
    }
  }
  for (; q < nq; ++q) {
    T* __restrict__ r = rows + q * ldr;
    for (int64_t j = 0; j < nc; ++j) r[j] = T(0);
    const T* aq = a + q * lda;
    for (int64_t d = 0; d < D; ++d) {
      const T v = aq[d];
      const T* __restrict__ tr = t + d * ldt;
      for (int64_t j = 0; j < nc; ++j) r[j] = step(r[j], v, tr[j]);
    }
  }
}

GF_MULTIVERSION void direct_rows(const float* a, int64_t lda, int64_t nq, int64_t D,
                                 const float* t, int64_t ldt, int64_t nc, float* rows,
                                 int64_t ldr, int mode) {
  if (mode == 0)
    direct_rows_impl<float, 0>(a, lda, nq, D, t, ldt, nc, rows, ldr);
  else if (mode == 1)
    direct_rows_impl<float, 1>(a, lda, nq, D, t, ldt, nc, rows, ldr);
  else
    direct_rows_impl<float, 2>(a, lda, nq, D, t, ldt, nc, rows, ldr);
}

GF_MULTIVERSION void direct_rows(const double* a, int64_t lda, int64_t nq, int64_t D,
                                 const double* t, int64_t ldt, int64_t nc, double* rows,
                                 int64_t ldr, int mode) {
  if (mode == 0)
    direct_rows_impl<double, 0>(a, lda, nq, D, t, ldt, nc, rows, ldr);
  else if (mode == 1)
    direct_rows_impl<double, 1>(a, lda, nq, D, t, ldt, nc, rows, ldr);
  else
    direct_rows_impl<double, 2>(a, lda, nq, D, t, ldt, nc, rows, ldr);
}

// Exact squared euclidean distance; 16 partial sums so that it vectorises.
template <typename T>
GF_ALWAYS_INLINE T squared_l2_impl(const T* __restrict__ a, const T* __restrict__ b, int64_t D) {
  T part[16] = {};
  int64_t d = 0;
  for (; d + 16 <= D; d += 16)
    for (int l = 0; l < 16; ++l) {
      const T t = a[d + l] - b[d + l];
      part[l] += t * t;
    }
  T s = T(0);
  for (; d < D; ++d) s += (a[d] - b[d]) * (a[d] - b[d]);
  for (int l = 0; l < 16; ++l) s += part[l];
  return s;
}

GF_MULTIVERSION float squared_l2(const float* a, const float* b, int64_t D) {
  return squared_l2_impl(a, b, D);
}

GF_MULTIVERSION double squared_l2(const double* a, const double* b, int64_t D) {
  return squared_l2_impl(a, b, D);
}

template <typename T>
GF_ALWAYS_INLINE bool any_below_impl(const T* __restrict__ v, T t) {
  int any = 0;
  for (int l = 0; l < 16; ++l) any |= v[l] < t;
  return any != 0;
}

// Adds the candidates row[0, nc) (local indices c0 + j) to one query's top-k.
template <typename T>
GF_ALWAYS_INLINE void scan_sorted_impl(const T* row, int64_t nc, int64_t c0, int64_t skip, int64_t K,
                        Entry<T>* top, int64_t& count) {
  int64_t j = 0;
  for (; j < nc && count < K; ++j) {  // fill phase
    if (j == skip) continue;
    const T v = row[j];
    int64_t p = count++;
    while (p > 0 && top[p - 1].d > v) {
      top[p] = top[p - 1];
      --p;
    }
    top[p] = {v, c0 + j};
  }
  if (j >= nc) return;
  T worst = top[K - 1].d;
  auto consider = [&](int64_t jj) {
    const T v = row[jj];
    if (!(v < worst) || jj == skip) return;
    int64_t p = K - 1;
    while (p > 0 && top[p - 1].d > v) {
      top[p] = top[p - 1];
      --p;
    }
    top[p] = {v, c0 + jj};
    worst = top[K - 1].d;
  };
  for (; j < nc && (j & 15) != 0; ++j) consider(j);
  // Past the first few candidates most are rejected: test 16 at a time (one vector compare).
  for (; j + 16 <= nc; j += 16) {
    if (!any_below_impl(row + j, worst)) continue;
    int hit[16];
    int m = 0;
    for (int l = 0; l < 16; ++l) {  // branch-free compaction of this block's candidates
      hit[m] = l;
      m += row[j + l] < worst;
    }
    for (int c = 0; c < m; ++c) consider(j + hit[c]);
  }
  for (; j < nc; ++j) consider(j);
}

GF_MULTIVERSION void scan_sorted(const float* row, int64_t nc, int64_t c0, int64_t skip,
                                 int64_t K, Entry<float>* top, int64_t& count) {
  scan_sorted_impl(row, nc, c0, skip, K, top, count);
}
GF_MULTIVERSION void scan_sorted(const double* row, int64_t nc, int64_t c0, int64_t skip,
                                 int64_t K, Entry<double>* top, int64_t& count) {
  scan_sorted_impl(row, nc, c0, skip, K, top, count);
}

template <typename T>
inline void scan_heap(const T* row, int64_t nc, int64_t c0, int64_t skip, int64_t K,
                      Entry<T>* heap, int64_t& count) {
  for (int64_t j = 0; j < nc; ++j) {
    if (j == skip) continue;
    const T v = row[j];
    if (count < K) {
      heap[count++] = {v, c0 + j};
      std::push_heap(heap, heap + count, entry_less<T>);
    } else if (v < heap[0].d) {  // equal distance: the incumbent has the lower index
      std::pop_heap(heap, heap + K, entry_less<T>);
      heap[K - 1] = {v, c0 + j};
      std::push_heap(heap, heap + K, entry_less<T>);
    }
  }
}

template <typename scalar_t>
bool all_finite(const at::Tensor& x) {
  const at::Tensor xc = x.contiguous();
  const scalar_t* X = xc.data_ptr<scalar_t>();
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  std::atomic<bool> finite{true};
  at::parallel_for(0, xc.numel(), 1 << 16, [&](int64_t i0, int64_t i1) {
    int bad = 0;
    for (int64_t i = i0; i < i1; ++i)  // NaN fails the comparison too
      bad |= !(std::abs(static_cast<acc_t>(X[i])) <= std::numeric_limits<acc_t>::max());
    if (bad) finite = false;
  });
  return finite.load();
}

struct Item {
  int64_t set, r0, r1;
};

template <typename scalar_t, typename acc_t>
void knn_cpu_kernel(const at::Tensor& x, const int64_t* ptr, int64_t B, const int64_t* keff,
                    const int64_t* out_off, Metric metric, bool loop, int64_t* out_src,
                    int64_t* out_dst, scalar_t* out_dist) {
  const int64_t D = x.size(1);
  const auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
  // Original points in the accumulation type (no copy for contiguous fp32 / fp64 input).
  const at::Tensor xf = x.to(acc_type).contiguous();
  const acc_t* X = xf.data_ptr<acc_t>();
  const int64_t N = xf.size(0);

  // Per-set preparation: the GEMM operand A (centred / normalised points) and squared
  // norms, or a transposed copy for the direct metrics.
  at::Tensor prep, sqn_t, small_t;
  const bool gemm = metric == Metric::L2 || metric == Metric::Cosine || metric == Metric::IP;
  if (metric == Metric::L2 || metric == Metric::Cosine || !gemm) prep = at::empty_like(xf);
  if (gemm) small_t = at::empty_like(xf);  // transposed operand of the small sets
  acc_t* ST = small_t.defined() ? small_t.data_ptr<acc_t>() : nullptr;
  if (metric == Metric::L2) sqn_t = at::empty({N}, xf.options());
  acc_t* P = prep.defined() ? prep.data_ptr<acc_t>() : nullptr;
  acc_t* SQ = sqn_t.defined() ? sqn_t.data_ptr<acc_t>() : nullptr;
  {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<double> mean(D);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t s = ptr[b], n = ptr[b + 1] - ptr[b];
        if (n == 0 || keff[b] == 0) continue;
        if (metric == Metric::L2) {
          std::fill(mean.begin(), mean.end(), 0.0);
          for (int64_t i = s; i < s + n; ++i)
            for (int64_t d = 0; d < D; ++d) mean[d] += X[i * D + d];
          for (int64_t d = 0; d < D; ++d) mean[d] /= static_cast<double>(n);
          for (int64_t i = s; i < s + n; ++i) {
            acc_t sq = 0;
            for (int64_t d = 0; d < D; ++d) {
              const acc_t c = static_cast<acc_t>(static_cast<double>(X[i * D + d]) - mean[d]);
              P[i * D + d] = c;
              sq += c * c;
            }
            SQ[i] = sq;
          }
        } else if (metric == Metric::Cosine) {
          for (int64_t i = s; i < s + n; ++i) {
            double sq = 0;
            for (int64_t d = 0; d < D; ++d) sq += static_cast<double>(X[i * D + d]) * X[i * D + d];
            const double inv = sq > 0 ? 1.0 / std::sqrt(sq) : 0.0;  // zero vector: cos = 0
            for (int64_t d = 0; d < D; ++d)
              P[i * D + d] = static_cast<acc_t>(X[i * D + d] * inv);
          }
        } else if (!gemm) {  // l1 / linf: set-local transpose [D][n]
          acc_t* T = P + s * D;
          for (int64_t i = 0; i < n; ++i)
            for (int64_t d = 0; d < D; ++d) T[d * n + i] = X[(s + i) * D + d];
        }
        if (gemm && n <= kSmallSet) {
          const acc_t* src = metric == Metric::IP ? X : P;
          acc_t* T = ST + s * D;
          for (int64_t i = 0; i < n; ++i)
            for (int64_t d = 0; d < D; ++d) T[d * n + i] = src[(s + i) * D + d];
        }
      }
    });
  }
  const acc_t* A = metric == Metric::IP ? X : P;

  // Work items, largest first.
  std::vector<Item> items;
  int64_t kcap = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = ptr[b + 1] - ptr[b];
    if (n == 0 || keff[b] == 0) continue;
    kcap = std::max(kcap, keff[b]);
    const int64_t nblk = (n + kQueryBlock - 1) / kQueryBlock;
    const int64_t rows = (n + nblk - 1) / nblk;
    for (int64_t r0 = 0; r0 < n; r0 += rows) items.push_back({b, r0, std::min(n, r0 + rows)});
  }
  std::stable_sort(items.begin(), items.end(), [&](const Item& a, const Item& b) {
    return (a.r1 - a.r0) * (ptr[a.set + 1] - ptr[a.set]) >
           (b.r1 - b.r0) * (ptr[b.set + 1] - ptr[b.set]);
  });
  const int64_t n_items = static_cast<int64_t>(items.size());
  if (n_items == 0) return;

  std::atomic<int64_t> next{0};
  const int64_t n_workers = std::min<int64_t>(at::get_num_threads(), n_items);
  at::parallel_for(0, n_workers, 1, [&](int64_t, int64_t) {
    c10::InferenceMode guard;
    std::vector<acc_t> block(kQueryBlock * kCandBlock);
    std::vector<Entry<acc_t>> top(kQueryBlock * kcap);
    std::vector<int64_t> count(kQueryBlock);
    const auto opts = at::TensorOptions().dtype(acc_type);
    for (int64_t it = next.fetch_add(1); it < n_items; it = next.fetch_add(1)) {
      const Item item = items[it];
      const int64_t s = ptr[item.set], n = ptr[item.set + 1] - s, K = keff[item.set];
      const int64_t nq = item.r1 - item.r0;
      const bool use_heap = K > kSortedMaxK;
      std::fill(count.begin(), count.begin() + nq, 0);
      for (int64_t c0 = 0; c0 < n; c0 += kCandBlock) {
        const int64_t nc = std::min(kCandBlock, n - c0);
        acc_t* G = block.data();
        if (gemm && n <= kSmallSet) {
          direct_rows(A + (s + item.r0) * D, D, nq, D, ST + s * D + c0, n, nc, G, nc, 2);
        } else if (gemm) {
          const at::Tensor aq = at::from_blob(const_cast<acc_t*>(A + (s + item.r0) * D), {nq, D}, opts);
          const at::Tensor ac = at::from_blob(const_cast<acc_t*>(A + (s + c0) * D), {nc, D}, opts);
          at::Tensor g = at::from_blob(G, {nq, nc}, opts);
          at::mm_out(g, aq, ac.t());
        } else {
          direct_rows(X + (s + item.r0) * D, D, nq, D, P + s * D + c0, n, nc, G, nc,
                      metric == Metric::Linf ? 1 : 0);
        }
        for (int64_t q = 0; q < nq; ++q) {
          acc_t* row = G + q * nc;
          if (metric == Metric::L2) {  // rank by ||b||^2 - 2ab (||a||^2 is constant per row)
            const acc_t* sq = SQ + s + c0;
            for (int64_t j = 0; j < nc; ++j) row[j] = sq[j] - 2 * row[j];
          } else if (metric == Metric::Cosine) {
            for (int64_t j = 0; j < nc; ++j) row[j] = 1 - row[j];
          } else if (metric == Metric::IP) {
            for (int64_t j = 0; j < nc; ++j) row[j] = -row[j];
          }
          const int64_t skip = loop ? -1 : item.r0 + q - c0;
          Entry<acc_t>* tq = top.data() + q * kcap;
          if (use_heap)
            scan_heap(row, nc, c0, skip, K, tq, count[q]);
          else
            scan_sorted(row, nc, c0, skip, K, tq, count[q]);
        }
      }
      // Final distances, exact (distance, index) order, write-out.
      for (int64_t q = 0; q < nq; ++q) {
        Entry<acc_t>* tq = top.data() + q * kcap;
        const int64_t qi = s + item.r0 + q;
        for (int64_t e = 0; e < K; ++e) {
          acc_t d = tq[e].d;
          if (metric == Metric::L2)
            d = std::sqrt(squared_l2(X + qi * D, X + (s + tq[e].i) * D, D));
          else if (metric == Metric::Cosine)
            d = std::max(d, acc_t(0));
          // Order by the value the caller sees (rounded to the output dtype).
          tq[e].d = static_cast<acc_t>(static_cast<scalar_t>(d));
        }
        if (use_heap) std::sort(tq, tq + K, entry_less<acc_t>);
        for (int64_t e = 1; e < K; ++e) {  // nearly sorted already: insertion sort
          const Entry<acc_t> v = tq[e];
          int64_t p = e;
          while (p > 0 && entry_less(v, tq[p - 1])) {
            tq[p] = tq[p - 1];
            --p;
          }
          tq[p] = v;
        }
        const int64_t o = out_off[item.set] + (item.r0 + q) * K;
        for (int64_t e = 0; e < K; ++e) {
          out_src[o + e] = s + tq[e].i;
          out_dst[o + e] = qi;
          out_dist[o + e] = static_cast<scalar_t>(tq[e].d);
        }
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> batched_knn_cpu(const at::Tensor& x, const at::Tensor& ptr,
                                                   const at::Tensor& k,
                                                   c10::string_view metric_name, bool loop) {
  const Metric metric = parse_metric(metric_name);
  TORCH_CHECK_VALUE(x.dim() == 2, "graphforge::batched_knn: x must be 2-D [N, D], got ",
                    x.dim(), "-D");
  TORCH_CHECK_VALUE(at::isFloatingType(x.scalar_type()),
                    "graphforge::batched_knn: x must be floating point, got ", x.scalar_type());
  TORCH_CHECK(x.device().is_cpu() && ptr.device().is_cpu() && k.device().is_cpu(),
              "graphforge::batched_knn (CPU): x, ptr and k must all be CPU tensors");
  TORCH_CHECK_VALUE(ptr.dim() == 1 && ptr.size(0) >= 1 && ptr.scalar_type() == at::kLong,
                    "graphforge::batched_knn: ptr must be a 1-D int64 tensor [B + 1]");
  const int64_t B = ptr.size(0) - 1;
  TORCH_CHECK_VALUE(k.dim() == 1 && k.size(0) == B && k.scalar_type() == at::kLong,
                    "graphforge::batched_knn: k must be a 1-D int64 tensor with one entry per "
                    "set (", B, "), got shape ", k.sizes());
  const at::Tensor ptr_c = ptr.contiguous(), k_c = k.contiguous();
  const int64_t* P = ptr_c.data_ptr<int64_t>();
  const int64_t* K = k_c.data_ptr<int64_t>();
  const int64_t N = x.size(0);
  TORCH_CHECK_VALUE(P[0] == 0 && P[B] == N, "graphforge::batched_knn: ptr must start at 0 and "
                    "end at N = ", N, ", got ptr[0] = ", P[0], ", ptr[-1] = ", P[B]);
  std::vector<int64_t> keff(B), out_off(B + 1, 0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = P[b + 1] - P[b];
    TORCH_CHECK_VALUE(n >= 0, "graphforge::batched_knn: ptr must be non-decreasing (ptr[", b,
                      "] = ", P[b], " > ptr[", b + 1, "] = ", P[b + 1], ")");
    TORCH_CHECK_VALUE(K[b] >= 0, "graphforge::batched_knn: k must be >= 0, got k[", b,
                      "] = ", K[b]);
    keff[b] = std::max<int64_t>(0, std::min(K[b], loop ? n : n - 1));
    out_off[b + 1] = out_off[b] + n * keff[b];
  }
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batched_knn_cpu",
                                  [&] { finite = all_finite<scalar_t>(x); });
  TORCH_CHECK_VALUE(finite, "graphforge::batched_knn: x contains NaN or Inf");
  const int64_t E = out_off[B];
  at::Tensor edge_index = at::empty({2, E}, ptr.options());
  at::Tensor dist = at::empty({E}, x.options());
  if (E == 0) return {dist, edge_index};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batched_knn_cpu",
                                  [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    knn_cpu_kernel<scalar_t, acc_t>(x, P, B, keff.data(), out_off.data(), metric, loop,
                                    edge_index.data_ptr<int64_t>(),
                                    edge_index.data_ptr<int64_t>() + E,
                                    dist.data_ptr<scalar_t>());
  });
  return {dist, edge_index};
}

TORCH_LIBRARY_IMPL(graphforge, CPU, m) { m.impl("batched_knn", &batched_knn_cpu); }

}  // namespace graphforge
