// CPU kernel of graphforge::batched_knn (semantics in csrc/knn.h).
//
// Two paths:
//   * fp32 (and fp16 / bf16, accumulated in fp32) l2 / cosine / ip on sets of at most
//     kFastMaxN points, on x86-64 with AVX2 + FMA (checked at run time): one work item per
//     set, no ATen call or allocation in the loop; a register-tiled Gram kernel over the
//     upper triangle, a two-pass register top-k for k <= 16 and a vectorised exact l2
//     recompute. Details above fast_set below.
//   * everything else (fp64, l1 / linf, larger sets, other CPUs): work items of one set and
//     a block of up to kQueryBlock queries; threads take items from a shared counter,
//     largest first, so mixed set sizes stay balanced. Per item, candidates are visited in
//     blocks of kCandBlock:
//       - l2 / cosine / ip: one GEMM (ATen mm -> MKL/OpenBLAS) gives the query x candidate
//         inner products (sets <= kSmallSet points: a direct kernel instead);
//       - l1 / linf: a direct blocked kernel over a per-set transposed copy, vectorised
//         over candidates (compiled for AVX-512 / AVX2 / baseline, picked at run time).
//     Each query keeps its k best (distance, index) pairs in a sorted array (insertion) for
//     small k or a binary max-heap for large k.
// Both: l2 works on per-set centred points to avoid the cancellation of
// ||a||^2 + ||b||^2 - 2ab, and the distances of the k selected neighbours are recomputed
// exactly from the original points. Candidates are taken in ascending index order, so a
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
#include <cstdint>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#endif

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

// Sorts top[0, K) by (distance, index); cheap when it is nearly sorted already (the
// recomputed exact distances move an entry by a rank or two at most).
template <typename T>
inline void insertion_sort(Entry<T>* top, int64_t K) {
  for (int64_t e = 1; e < K; ++e) {
    const Entry<T> v = top[e];
    int64_t p = e;
    while (p > 0 && entry_less(v, top[p - 1])) {
      top[p] = top[p - 1];
      --p;
    }
    top[p] = v;
  }
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
GF_MULTIVERSION void scan_sorted(const int32_t* row, int64_t nc, int64_t c0, int64_t skip,
                                 int64_t K, Entry<int32_t>* top, int64_t& count) {
  scan_sorted_impl(row, nc, c0, skip, K, top, count);
}

template <typename T>
GF_ALWAYS_INLINE void scan_heap_impl(const T* row, int64_t nc, int64_t c0, int64_t skip, int64_t K,
                                     Entry<T>* heap, int64_t& count) {
  auto consider = [&](int64_t j) {
    if (j == skip) return;
    const T v = row[j];
    if (count < K) {
      heap[count++] = {v, c0 + j};
      std::push_heap(heap, heap + count, entry_less<T>);
    } else if (v < heap[0].d) {  // equal distance: the incumbent has the lower index
      std::pop_heap(heap, heap + K, entry_less<T>);
      heap[K - 1] = {v, c0 + j};
      std::push_heap(heap, heap + K, entry_less<T>);
    }
  };
  int64_t j = 0;
  for (; j < nc && (count < K || (j & 15) != 0); ++j) consider(j);
  // Once the heap is full most candidates are rejected: test 16 at a time.
  for (; j + 16 <= nc; j += 16) {
    if (!any_below_impl(row + j, heap[0].d)) continue;
    for (int l = 0; l < 16; ++l) consider(j + l);
  }
  for (; j < nc; ++j) consider(j);
}

GF_MULTIVERSION void scan_heap(const float* row, int64_t nc, int64_t c0, int64_t skip, int64_t K,
                               Entry<float>* heap, int64_t& count) {
  scan_heap_impl(row, nc, c0, skip, K, heap, count);
}
GF_MULTIVERSION void scan_heap(const double* row, int64_t nc, int64_t c0, int64_t skip, int64_t K,
                               Entry<double>* heap, int64_t& count) {
  scan_heap_impl(row, nc, c0, skip, K, heap, count);
}
GF_MULTIVERSION void scan_heap(const int32_t* row, int64_t nc, int64_t c0, int64_t skip, int64_t K,
                               Entry<int32_t>* heap, int64_t& count) {
  scan_heap_impl(row, nc, c0, skip, K, heap, count);
}

// out[j] = bias[j] + alpha * dots[j] in int32 (the caller rules out overflow); unsigned
// arithmetic so that the compiler may vectorise without signed-overflow assumptions.
GF_MULTIVERSION void affine_int32(const int32_t* __restrict__ dots, const int32_t* __restrict__ bias,
                                  int32_t alpha, int64_t n, int32_t* __restrict__ out) {
  const uint32_t a = static_cast<uint32_t>(alpha);
  for (int64_t j = 0; j < n; ++j)
    out[j] = static_cast<int32_t>(static_cast<uint32_t>(bias[j]) + a * static_cast<uint32_t>(dots[j]));
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

// Whether p[0, n) holds no NaN / Inf (NaN fails the comparison too); vectorises.
inline bool finite_range(const float* p, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= !(std::abs(p[i]) <= std::numeric_limits<float>::max());
  return bad == 0;
}

// ---------------------------------------------------------------------------------------
// fp32 fast path for l2 / cosine / ip on sets of at most kFastMaxN points (x86-64 with
// AVX2 + FMA, checked at run time). One work item per set, no ATen call and no allocation
// inside the loop:
//   1. the set's points (centred for l2, normalised for cosine) are packed transposed in
//      blocks of 16 points, pack[blk][d][16], zero padded;
//   2. the Gram matrix comes from a 4 x 16 register-tiled FMA kernel over that packing; only
//      the tiles on or above the diagonal (at 8-point granularity) are computed and the
//      rest is mirrored (the products are the same FMA chain either way, so duplicates
//      still tie exactly);
//   3. top-k for k <= 16 (reg_topk): a branch-free pass bounds the k-th smallest ranking
//      value from above (t, usually within a rank or two), the candidates <= t are
//      compacted in index order and ordered by (value, position), or inserted into sorted
//      registers when there are many. k > 16, or a row with Inf / NaN values, goes through
//      the generic scalar scan instead;
//   4. l2: the k distances are recomputed exactly from the original points, four pairs at a
//      time, all pairs through the same operations (bitwise equal for duplicates).
// Centring uses an fp32 mean: any common shift leaves the ranking exact, the mean only
// keeps the magnitudes small; x - mean itself is rounded once, as before.
// ---------------------------------------------------------------------------------------
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define GF_FAST_X86 1
#define GF_AVX2 __attribute__((target("avx2,fma")))
#else
#define GF_FAST_X86 0
#endif

constexpr int64_t kFastMaxN = 512;  // Gram matrix of one set: <= 1 MiB
constexpr int64_t kFastRegK = 16;   // register top-k up to this k

bool fast_path_available() {
#if GF_FAST_X86
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

// 64-byte aligned float scratch that only grows.
struct AlignedBuf {
  std::vector<float> v;
  float* p = nullptr;
  int64_t cap = 0;
  float* get(int64_t n) {
    if (n > cap) {
      v.assign(static_cast<size_t>(n + 16), 0.f);
      const auto addr = reinterpret_cast<uintptr_t>(v.data());
      p = v.data() + ((64 - (addr & 63)) & 63) / sizeof(float);
      cap = n;
    }
    return p;
  }
};

#if GF_FAST_X86
// In-register transpose of an 8 x 8 float block.
GF_AVX2 inline void transpose8(__m256* r) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Packs n points (rows of X, D wide) as pack[blk][d][16]; l2: minus the set mean (fp64
// accumulated), cosine: divided by the norm (fp64), ip: as they are. alpha[j] is the
// per-candidate term of the ranking value alpha[j] + beta * <a, b>: ||b||^2 of the packed
// point for l2, 1 for cosine, 0 for ip; +Inf for the padding.
GF_AVX2 bool fast_pack(const float* X, int64_t n, int64_t D, Metric metric, float* pack,
                       float* alpha, double* mean, float* meanf, bool check) {
  // The NaN / Inf check of x, fused here (the set is read from memory once: this pass
  // brings it into the cache for the next ones).
  if (check && !finite_range(X, n * D)) return false;
  const int64_t nb = (n + 15) / 16;
  std::fill(pack, pack + nb * D * 16, 0.f);
  if (metric == Metric::L2) {
    // Any common shift is exact for the ranking; the mean only keeps the values small.
    const double inv_n = 1.0 / static_cast<double>(n);
    int64_t d = 0;
    for (; d + 32 <= D; d += 32) {
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      for (int64_t i = 0; i < n; ++i) {
        const float* xi = X + i * D + d;
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xi));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xi + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(xi + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(xi + 24));
      }
      const __m256 sc = _mm256_set1_ps(static_cast<float>(inv_n));
      _mm256_storeu_ps(meanf + d, _mm256_mul_ps(s0, sc));
      _mm256_storeu_ps(meanf + d + 8, _mm256_mul_ps(s1, sc));
      _mm256_storeu_ps(meanf + d + 16, _mm256_mul_ps(s2, sc));
      _mm256_storeu_ps(meanf + d + 24, _mm256_mul_ps(s3, sc));
    }
    if (d < D) {
      std::fill(mean + d, mean + D, 0.0);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t e = d; e < D; ++e) mean[e] += X[i * D + e];
      for (int64_t e = d; e < D; ++e) meanf[e] = static_cast<float>(mean[e] * inv_n);
    }
  }
  int64_t i = 0;
  if (metric != Metric::Cosine) {  // 8 points x 8 dims at a time, transposed in registers
    for (; i + 8 <= n; i += 8) {
      float* dst = pack + (i / 16) * D * 16 + (i % 16);
      int64_t d = 0;
      for (; d + 8 <= D; d += 8) {
        __m256 r[8];
        const __m256 mv = metric == Metric::L2 ? _mm256_loadu_ps(meanf + d) : _mm256_setzero_ps();
        for (int k = 0; k < 8; ++k) r[k] = _mm256_sub_ps(_mm256_loadu_ps(X + (i + k) * D + d), mv);
        transpose8(r);
        for (int k = 0; k < 8; ++k) _mm256_store_ps(dst + (d + k) * 16, r[k]);
      }
      for (; d < D; ++d)
        for (int k = 0; k < 8; ++k)
          dst[d * 16 + k] = X[(i + k) * D + d] - (metric == Metric::L2 ? meanf[d] : 0.f);
    }
  }
  for (; i < n; ++i) {
    const float* xi = X + i * D;
    float* dst = pack + (i / 16) * D * 16 + (i % 16);
    if (metric == Metric::L2) {
      for (int64_t d = 0; d < D; ++d) dst[d * 16] = xi[d] - meanf[d];
    } else if (metric == Metric::Cosine) {
      double sq = 0;
      for (int64_t d = 0; d < D; ++d) sq += static_cast<double>(xi[d]) * xi[d];
      const double inv = sq > 0 ? 1.0 / std::sqrt(sq) : 0.0;  // zero vector: cos = 0
      for (int64_t d = 0; d < D; ++d) dst[d * 16] = static_cast<float>(xi[d] * inv);
    } else {
      for (int64_t d = 0; d < D; ++d) dst[d * 16] = xi[d];
    }
  }
  for (int64_t b = 0; b < nb; ++b) {
    float* a = alpha + b * 16;
    if (metric == Metric::L2) {
      __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
      const float* p = pack + b * D * 16;
      for (int64_t d = 0; d < D; ++d) {
        const __m256 v0 = _mm256_load_ps(p + d * 16), v1 = _mm256_load_ps(p + d * 16 + 8);
        s0 = _mm256_fmadd_ps(v0, v0, s0);
        s1 = _mm256_fmadd_ps(v1, v1, s1);
      }
      _mm256_store_ps(a, s0);
      _mm256_store_ps(a + 8, s1);
    } else {
      const float c = metric == Metric::Cosine ? 1.f : 0.f;
      for (int l = 0; l < 16; ++l) a[l] = c;
    }
    for (int64_t l = 0; l < 16; ++l)
      if (b * 16 + l >= n) a[l] = std::numeric_limits<float>::infinity();
  }
  return true;
}

// C[4][8 * NV] (row stride ldc) = A-rows x B-columns over D; pa points at the 4 query
// lanes of a packed block, pb at a packed block of 16 candidates.
template <int NV>
GF_AVX2 inline void gram_tile(const float* __restrict__ pa, const float* __restrict__ pb,
                              int64_t D, float* C, int64_t ldc) {
  __m256 c00 = _mm256_setzero_ps(), c10 = c00, c20 = c00, c30 = c00;
  __m256 c01 = c00, c11 = c00, c21 = c00, c31 = c00;
  for (int64_t d = 0; d < D; ++d) {
    const float* a = pa + d * 16;
    const float* b = pb + d * 16;
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 a0 = _mm256_broadcast_ss(a), a1 = _mm256_broadcast_ss(a + 1);
    const __m256 a2 = _mm256_broadcast_ss(a + 2), a3 = _mm256_broadcast_ss(a + 3);
    c00 = _mm256_fmadd_ps(a0, b0, c00);
    c10 = _mm256_fmadd_ps(a1, b0, c10);
    c20 = _mm256_fmadd_ps(a2, b0, c20);
    c30 = _mm256_fmadd_ps(a3, b0, c30);
    if constexpr (NV == 2) {
      const __m256 b1 = _mm256_load_ps(b + 8);
      c01 = _mm256_fmadd_ps(a0, b1, c01);
      c11 = _mm256_fmadd_ps(a1, b1, c11);
      c21 = _mm256_fmadd_ps(a2, b1, c21);
      c31 = _mm256_fmadd_ps(a3, b1, c31);
    }
  }
  _mm256_store_ps(C, c00);
  _mm256_store_ps(C + ldc, c10);
  _mm256_store_ps(C + 2 * ldc, c20);
  _mm256_store_ps(C + 3 * ldc, c30);
  if constexpr (NV == 2) {
    _mm256_store_ps(C + 8, c01);
    _mm256_store_ps(C + ldc + 8, c11);
    _mm256_store_ps(C + 2 * ldc + 8, c21);
    _mm256_store_ps(C + 3 * ldc + 8, c31);
  }
}

// Gram matrix G[i][j] (row stride ldg = 16 * blocks) of the packed set, for i, j < n
// (columns up to the next multiple of 8 are written too). Row i is computed from column
// 8 * (i / 8) on, the rest is mirrored.
GF_AVX2 void fast_gram(const float* pack, int64_t n, int64_t D, float* G, int64_t ldg) {
  const int64_t nb = (n + 15) / 16;
  const int64_t rows = (n + 3) / 4 * 4;
  for (int64_t jb = 0; jb < nb; ++jb) {
    const float* pb = pack + jb * D * 16;
    const int64_t iend = std::min(rows, 16 * (jb + 1));
    const bool half = n - 16 * jb <= 8;
    for (int64_t i0 = 0; i0 < iend; i0 += 4) {
      const float* pa = pack + (i0 / 16) * D * 16 + (i0 % 16);
      float* C = G + i0 * ldg + jb * 16;
      if (i0 >= 16 * jb + 8)  // left 8 columns of this block: mirrored later
        gram_tile<1>(pa, pb + 8, D, C + 8, ldg);
      else if (half)
        gram_tile<1>(pa, pb, D, C, ldg);
      else
        gram_tile<2>(pa, pb, D, C, ldg);
    }
  }
  // Below the computed band: mirror, 8 x 8 blocks (G has ldg rows; rows >= n are junk).
  for (int64_t i0 = 8; i0 < n; i0 += 8) {
    for (int64_t j0 = 0; j0 < i0; j0 += 8) {
      __m256 r[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_load_ps(G + (j0 + k) * ldg + i0);
      transpose8(r);
      for (int k = 0; k < 8; ++k) _mm256_store_ps(G + (i0 + k) * ldg + j0, r[k]);
    }
  }
}

// Shifts the sorted register pair (d0, d1 / i0, i1) to make room for (v, j) after every
// entry <= v (candidates come in ascending index order: ties keep the incumbent first).
template <int NK>
GF_AVX2 inline void reg_insert(__m256& d0, __m256& d1, __m256i& i0, __m256i& i1, __m256 vb,
                               __m256i jb) {
  const __m256i perm = _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6);
  const __m256 r0 = _mm256_permutevar8x32_ps(d0, perm);  // [d0[7], d0[0..6]]
  const __m256i q0 = _mm256_permutevar8x32_epi32(i0, perm);
  const __m256 s0 = _mm256_blend_ps(r0, _mm256_set1_ps(-std::numeric_limits<float>::infinity()), 1);
  const __m256 gt0 = _mm256_cmp_ps(d0, vb, _CMP_GT_OQ);
  const __m256 sg0 = _mm256_cmp_ps(s0, vb, _CMP_GT_OQ);
  const __m256 nd0 = _mm256_blendv_ps(d0, _mm256_blendv_ps(vb, s0, sg0), gt0);
  const __m256i ni0 = _mm256_blendv_epi8(
      i0, _mm256_blendv_epi8(jb, q0, _mm256_castps_si256(sg0)), _mm256_castps_si256(gt0));
  if constexpr (NK == 2) {
    const __m256 r1 = _mm256_permutevar8x32_ps(d1, perm);
    const __m256i q1 = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(i1, perm), q0, 1);
    const __m256 s1 = _mm256_blend_ps(r1, r0, 1);
    const __m256 gt1 = _mm256_cmp_ps(d1, vb, _CMP_GT_OQ);
    const __m256 sg1 = _mm256_cmp_ps(s1, vb, _CMP_GT_OQ);
    d1 = _mm256_blendv_ps(d1, _mm256_blendv_ps(vb, s1, sg1), gt1);
    i1 = _mm256_blendv_epi8(
        i1, _mm256_blendv_epi8(jb, q1, _mm256_castps_si256(sg1)), _mm256_castps_si256(gt1));
  }
  d0 = nd0;
  i0 = ni0;
}

// Top-K (K <= 8 * NK) of the row alpha[j] + beta * g[j], j < n, j != self. Two passes:
//   1. branch-free: the M = NK + 1 smallest values of each of the 8 lanes (candidates
//      j = l mod 8); the K-th smallest of those 8 * M values, t, bounds the row's K-th
//      smallest from above and is usually within one or two ranks of it;
//   2. only the candidates <= t (about K of them) go through the sorted register insertion.
// Returns false when fewer than K finite candidates were taken (Inf / NaN values): the
// caller redoes the row with the generic scan.
// lut[m]: the set lanes of the 8-bit mask m, as byte indices packed from the low end.
const uint64_t* compress_lut() {
  static const std::vector<uint64_t> table = [] {
    std::vector<uint64_t> t(256);
    for (unsigned m = 0; m < 256; ++m) {
      uint64_t bytes = 0;
      int k = 0;
      for (unsigned l = 0; l < 8; ++l)
        if (m >> l & 1u) bytes |= static_cast<uint64_t>(l) << (8 * k++);
      t[m] = bytes;
    }
    return t;
  }();
  return table.data();
}

// Without self-loops g[self] must hold -Inf (the self candidate then ranks +Inf). cv / ci:
// room for n + 16 values / indices.
template <int NK>
GF_AVX2 bool reg_topk(const float* g, const float* alpha, float beta, int64_t n, int64_t K,
                      float* cv, int32_t* ci, Entry<float>* out) {
  const float inf = std::numeric_limits<float>::infinity();
  const __m256 infv = _mm256_set1_ps(inf);
  const __m256 bv = _mm256_set1_ps(beta);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // Pass 1.
  __m256 L0 = infv, L1 = infv, L2 = infv;
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    __m256 v = _mm256_fmadd_ps(bv, _mm256_load_ps(g + j0), _mm256_load_ps(alpha + j0));
    const __m256 m0 = _mm256_min_ps(L0, v);
    v = _mm256_max_ps(L0, v);
    L0 = m0;
    if constexpr (NK == 2) {
      const __m256 m1 = _mm256_min_ps(L1, v);
      v = _mm256_max_ps(L1, v);
      L1 = m1;
      L2 = _mm256_min_ps(L2, v);
    } else {
      L1 = _mm256_min_ps(L1, v);
    }
  }
  // t = the K-th smallest of the 8 * (NK + 1) lane values = the largest one with at most
  // K - 1 of them below it (counts over all lane rotations, branch-free).
  __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0;
  __m256i rot = lane;
  const __m256i one = _mm256_set1_epi32(1), seven = _mm256_set1_epi32(7);
  for (int r = 0; r < 8; ++r) {
    const __m256 R0 = _mm256_permutevar8x32_ps(L0, rot);
    const __m256 R1 = _mm256_permutevar8x32_ps(L1, rot);
#define GF_BELOW(c, R, L) c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(R, L, _CMP_LT_OQ)))
    GF_BELOW(c0, R0, L0);
    GF_BELOW(c0, R1, L0);
    GF_BELOW(c1, R0, L1);
    GF_BELOW(c1, R1, L1);
    if constexpr (NK == 2) {
      const __m256 R2 = _mm256_permutevar8x32_ps(L2, rot);
      GF_BELOW(c0, R2, L0);
      GF_BELOW(c1, R2, L1);
      GF_BELOW(c2, R0, L2);
      GF_BELOW(c2, R1, L2);
      GF_BELOW(c2, R2, L2);
    }
#undef GF_BELOW
    rot = _mm256_and_si256(_mm256_add_epi32(rot, one), seven);
  }
  const __m256i kv = _mm256_set1_epi32(static_cast<int>(K));
  const __m256 ninf = _mm256_set1_ps(-inf);
  __m256 tm = _mm256_blendv_ps(ninf, L0, _mm256_castsi256_ps(_mm256_cmpgt_epi32(kv, c0)));
  tm = _mm256_max_ps(tm, _mm256_blendv_ps(ninf, L1, _mm256_castsi256_ps(_mm256_cmpgt_epi32(kv, c1))));
  if constexpr (NK == 2)
    tm = _mm256_max_ps(tm, _mm256_blendv_ps(ninf, L2, _mm256_castsi256_ps(_mm256_cmpgt_epi32(kv, c2))));
  tm = _mm256_max_ps(tm, _mm256_permute2f128_ps(tm, tm, 1));
  tm = _mm256_max_ps(tm, _mm256_shuffle_ps(tm, tm, 0x4e));
  const __m256 tv = _mm256_max_ps(tm, _mm256_shuffle_ps(tm, tm, 0xb1));
  // Pass 2: the candidates <= t, compacted in index order (branch-free, through a
  // permutation table), then inserted. A candidate that does not beat the current K-th
  // entry leaves the first K lanes unchanged, so no further test is needed; the self
  // candidate ranks +Inf and never displaces anything.
  const uint64_t* lut = compress_lut();
  int64_t cnt = 0;
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    const __m256 v = _mm256_fmadd_ps(bv, _mm256_load_ps(g + j0), _mm256_load_ps(alpha + j0));
    const unsigned m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, tv, _CMP_LE_OQ)));
    const __m256i perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(lut[m])));
    const __m256i jv = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int>(j0)));
    _mm256_storeu_ps(cv + cnt, _mm256_permutevar8x32_ps(v, perm));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ci + cnt), _mm256_permutevar8x32_epi32(jv, perm));
    cnt += __builtin_popcount(m);
  }
  if (cnt < K) return false;
  if (cnt <= 16) {  // usual case: each candidate's rank by (value, position), no dependency chain
    _mm256_storeu_ps(cv + cnt, infv);
    _mm256_storeu_ps(cv + cnt + 8, infv);
    const __m256 V0 = _mm256_loadu_ps(cv), V1 = _mm256_loadu_ps(cv + 8);
    int pos[16];
    for (int p = 0; p < cnt; ++p) {
      const __m256 vp = _mm256_broadcast_ss(cv + p);
      const unsigned lt = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(V0, vp, _CMP_LT_OQ))) |
                          static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(V1, vp, _CMP_LT_OQ))) << 8;
      const unsigned eq = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(V0, vp, _CMP_EQ_OQ))) |
                          static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(V1, vp, _CMP_EQ_OQ))) << 8;
      pos[__builtin_popcount(lt) + __builtin_popcount(eq & ((1u << p) - 1u))] = p;
    }
    for (int64_t e = 0; e < K; ++e) out[e] = {cv[pos[e]], ci[pos[e]]};
    return out[K - 1].d < inf;  // +Inf: the self candidate or an overflow; redo the row
  }
  __m256 d0 = infv, d1 = d0;
  __m256i i0 = _mm256_set1_epi32(-1), i1 = i0;
  for (int64_t c = 0; c < cnt; ++c)
    reg_insert<NK>(d0, d1, i0, i1, _mm256_broadcast_ss(cv + c), _mm256_set1_epi32(ci[c]));
  alignas(32) float dd[16];
  alignas(32) int32_t ii[16];
  _mm256_store_ps(dd, d0);
  _mm256_store_ps(dd + 8, d1);
  _mm256_store_si256(reinterpret_cast<__m256i*>(ii), i0);
  _mm256_store_si256(reinterpret_cast<__m256i*>(ii + 8), i1);
  for (int64_t e = 0; e < K; ++e) {
    if (ii[e] < 0) return false;
    out[e] = {dd[e], ii[e]};
  }
  return true;
}

// Exact euclidean distances of query q to the K selected points of its set, four at a
// time (the query's loads are shared, the horizontal sums combined). Every pair goes
// through the same operations in the same order (a last partial group repeats its last
// pair), so duplicate points get bitwise equal distances and ties stay with the index.
GF_AVX2 void fast_dists(const float* q, const float* S, int64_t D, Entry<float>* top,
                        int64_t K) {
  const int64_t D8 = D / 8 * 8;
  for (int64_t e = 0; e < K; e += 4) {
    const float* b0 = S + top[e].i * D;
    const float* b1 = S + top[std::min(e + 1, K - 1)].i * D;
    const float* b2 = S + top[std::min(e + 2, K - 1)].i * D;
    const float* b3 = S + top[std::min(e + 3, K - 1)].i * D;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t d = 0; d < D8; d += 8) {
      const __m256 a = _mm256_loadu_ps(q + d);
      const __m256 t0 = _mm256_sub_ps(a, _mm256_loadu_ps(b0 + d));
      const __m256 t1 = _mm256_sub_ps(a, _mm256_loadu_ps(b1 + d));
      const __m256 t2 = _mm256_sub_ps(a, _mm256_loadu_ps(b2 + d));
      const __m256 t3 = _mm256_sub_ps(a, _mm256_loadu_ps(b3 + d));
      s0 = _mm256_fmadd_ps(t0, t0, s0);
      s1 = _mm256_fmadd_ps(t1, t1, s1);
      s2 = _mm256_fmadd_ps(t2, t2, s2);
      s3 = _mm256_fmadd_ps(t3, t3, s3);
    }
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(s0, s1), _mm256_hadd_ps(s2, s3));
    alignas(16) float r[4];
    _mm_store_ps(r, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    for (int64_t d = D8; d < D; ++d) {
      r[0] += (q[d] - b0[d]) * (q[d] - b0[d]);
      r[1] += (q[d] - b1[d]) * (q[d] - b1[d]);
      r[2] += (q[d] - b2[d]) * (q[d] - b2[d]);
      r[3] += (q[d] - b3[d]) * (q[d] - b3[d]);
    }
    _mm_store_ps(r, _mm_sqrt_ps(_mm_load_ps(r)));
    for (int64_t l = 0; l < 4 && e + l < K; ++l) top[e + l].d = r[l];
  }
}

// Generic row: the ranking values in full, then the scalar sorted scan or the heap.
GF_AVX2 void fast_row_values(const float* g, const float* alpha, float beta, int64_t n,
                             float* row) {
  for (int64_t j = 0; j < n; ++j) row[j] = std::fma(beta, g[j], alpha[j]);
}
#endif  // GF_FAST_X86

struct FastScratch {
  AlignedBuf pack, gram, alpha, row, meanf, cand;
  std::vector<int32_t> cand_idx;
  std::vector<double> mean;
  std::vector<Entry<float>> top;
};

// One set through the fast path; fills its output slots. With check, returns false (and
// does nothing else) when the set's points hold a NaN / Inf.
template <typename scalar_t>
bool fast_set(const float* X, int64_t s, int64_t n, int64_t D, int64_t K, Metric metric,
              bool loop, int64_t out0, FastScratch& w, int64_t* out_src, int64_t* out_dst,
              scalar_t* out_dist, bool check) {
#if GF_FAST_X86
  const int64_t nb = (n + 15) / 16, ldg = nb * 16;
  float* pack = w.pack.get(nb * D * 16);
  float* G = w.gram.get(ldg * ldg);
  float* alpha = w.alpha.get(ldg);
  float* meanf = w.meanf.get(D);
  if (static_cast<int64_t>(w.mean.size()) < D) w.mean.resize(D);
  if (static_cast<int64_t>(w.top.size()) < K) w.top.resize(K);
  const float* XS = X + s * D;
  if (!fast_pack(XS, n, D, metric, pack, alpha, w.mean.data(), meanf, check)) return false;
  fast_gram(pack, n, D, G, ldg);
  const float beta = metric == Metric::L2 ? -2.f : -1.f;
  float* cv = w.cand.get(ldg + 16);
  if (static_cast<int64_t>(w.cand_idx.size()) < ldg + 16) w.cand_idx.resize(ldg + 16);
  int32_t* ci = w.cand_idx.data();
  Entry<float>* tq = w.top.data();
  for (int64_t q = 0; q < n; ++q) {
    float* g = G + q * ldg;
    const int64_t self = loop ? -1 : q;
    const float gself = g[q];
    if (!loop) g[q] = -std::numeric_limits<float>::infinity();  // see reg_topk
    bool done = false;
    if (K <= 8)
      done = reg_topk<1>(g, alpha, beta, n, K, cv, ci, tq);
    else if (K <= kFastRegK)
      done = reg_topk<2>(g, alpha, beta, n, K, cv, ci, tq);
    if (!done) {
      g[q] = gself;
      float* row = w.row.get(n);
      fast_row_values(g, alpha, beta, n, row);
      int64_t count = 0;
      if (K > kSortedMaxK)
        scan_heap(row, n, 0, self, K, tq, count);
      else
        scan_sorted(row, n, 0, self, K, tq, count);
    }
    if (metric == Metric::L2) fast_dists(XS + q * D, XS, D, tq, K);
    for (int64_t e = 0; e < K; ++e) {
      float d = tq[e].d;
      if (metric == Metric::Cosine) d = std::max(d, 0.f);  // (l2: the root is taken already)
      tq[e].d = static_cast<float>(static_cast<scalar_t>(d));
    }
    if (K > kSortedMaxK) std::sort(tq, tq + K, entry_less<float>);
    insertion_sort(tq, K);
    const int64_t o = out0 + q * K;
    for (int64_t e = 0; e < K; ++e) {
      out_src[o + e] = s + tq[e].i;
      out_dst[o + e] = s + q;
      out_dist[o + e] = static_cast<scalar_t>(tq[e].d);
    }
  }
#endif
  return true;
}

struct Item {
  int64_t set, r0, r1;
};

template <typename scalar_t, typename acc_t>
void knn_cpu_kernel(const at::Tensor& x, const int64_t* ptr, int64_t B, const int64_t* keff,
                    const int64_t* out_off, Metric metric, bool loop, int64_t* out_src,
                    int64_t* out_dst, scalar_t* out_dist, std::atomic<bool>* nonfinite) {
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
  // Sets taken by the fp32 fast path (see fast_set); the rest go through the items below.
  const bool fast = std::is_same_v<acc_t, float> && gemm && fast_path_available();
  auto is_fast = [&](int64_t n) { return fast && n <= kFastMaxN; };
  if constexpr (std::is_same_v<acc_t, float>) {
    if (fast) {
      std::vector<int64_t> fsets;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t n = ptr[b + 1] - ptr[b];
        if (n > 0 && keff[b] > 0 && is_fast(n)) fsets.push_back(b);
      }
      std::stable_sort(fsets.begin(), fsets.end(), [&](int64_t a, int64_t b) {
        return ptr[a + 1] - ptr[a] > ptr[b + 1] - ptr[b];
      });
      const int64_t nf = static_cast<int64_t>(fsets.size());
      // Sets left to the generic path below, and points the fast path does not read (sets
      // with k = 0 too) for the fused NaN / Inf check. Usually none: then this call makes a
      // single parallel region (each one costs a fork / join, dear on a loaded machine).
      std::vector<int64_t> rest;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t n = ptr[b + 1] - ptr[b];
        if (n > 0 && !(keff[b] > 0 && is_fast(n))) rest.push_back(b);
      }
      if (nonfinite && !rest.empty()) {
        at::parallel_for(0, static_cast<int64_t>(rest.size()), 1, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t b = rest[r];
            if (!finite_range(X + ptr[b] * D, (ptr[b + 1] - ptr[b]) * D)) *nonfinite = true;
          }
        });
        if (nonfinite->load()) return;
      }
      bool any_rest = false;
      for (const int64_t b : rest) any_rest = any_rest || keff[b] > 0;
      if (nf > 0) {
        std::atomic<int64_t> next{0};
        const int64_t n_workers = std::min<int64_t>(at::get_num_threads(), nf);
        at::parallel_for(0, n_workers, 1, [&](int64_t, int64_t) {
          FastScratch w;
          for (int64_t it = next.fetch_add(1); it < nf; it = next.fetch_add(1)) {
            const int64_t b = fsets[it];
            if (!fast_set<scalar_t>(X, ptr[b], ptr[b + 1] - ptr[b], D, keff[b], metric, loop,
                                    out_off[b], w, out_src, out_dst, out_dist, nonfinite))
              *nonfinite = true;
          }
        });
        if (nonfinite && nonfinite->load()) return;
      }
      if (!any_rest) return;
    }
  }
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
        if (n == 0 || keff[b] == 0 || is_fast(n)) continue;
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
    if (n == 0 || keff[b] == 0 || is_fast(n)) continue;
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
        insertion_sort(tq, K);
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
  TORCH_CHECK(x.device().is_cpu() && ptr.device().is_cpu() && k.device().is_cpu(),
              "graphforge::batched_knn (CPU): x, ptr and k must all be CPU tensors");
  const int64_t B = check_knn_arguments(x, ptr, k);
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
  // fp32 input on the fast path: the NaN / Inf check is fused into the kernel (one pass
  // over x instead of two); everything else is checked here first.
  const bool fused_check = x.scalar_type() == at::kFloat && fast_path_available() &&
                           (metric == Metric::L2 || metric == Metric::Cosine || metric == Metric::IP);
  bool finite = true;
  if (!fused_check)
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batched_knn_cpu",
                                    [&] { finite = all_finite<scalar_t>(x); });
  TORCH_CHECK_VALUE(finite, "graphforge::batched_knn: x contains NaN or Inf");
  const int64_t E = out_off[B];
  at::Tensor edge_index = at::empty({2, E}, ptr.options());
  at::Tensor dist = at::empty({E}, x.options());
  if (E == 0) {
    if (fused_check)
      TORCH_CHECK_VALUE(all_finite<float>(x), "graphforge::batched_knn: x contains NaN or Inf");
    return {dist, edge_index};
  }
  std::atomic<bool> nonfinite{false};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batched_knn_cpu",
                                  [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    knn_cpu_kernel<scalar_t, acc_t>(x, P, B, keff.data(), out_off.data(), metric, loop,
                                    edge_index.data_ptr<int64_t>(),
                                    edge_index.data_ptr<int64_t>() + E,
                                    dist.data_ptr<scalar_t>(), fused_check ? &nonfinite : nullptr);
  });
  TORCH_CHECK_VALUE(!nonfinite.load(), "graphforge::batched_knn: x contains NaN or Inf");
  return {dist, edge_index};
}

// ---------------------------------------------------------------------------------------
// smallest_k: the k smallest entries of each row of a 2-D float32 / float64 score matrix,
// sorted by (value, column). The dataset-scale exact search (graphforge/neighbors.py) uses
// it on the [queries x database-block] blocks its GEMM produces: one streaming pass per
// row with the same vectorised reject-16-at-a-time scan as the KNN kernel above, instead
// of torch.topk's per-row copy and partial sort. Rows may be strided (a view of a larger
// buffer) as long as each row is contiguous. Values must not be NaN (the result is then
// unspecified); +Inf sorts last.
// ---------------------------------------------------------------------------------------
std::tuple<at::Tensor, at::Tensor> smallest_k_cpu(const at::Tensor& scores, int64_t k) {
  TORCH_CHECK(scores.device().is_cpu(), "graphforge::smallest_k (CPU): scores must be a CPU tensor");
  TORCH_CHECK_VALUE(scores.dim() == 2, "graphforge::smallest_k: scores must be 2-D [M, N], got ",
                    scores.dim(), "-D");
  TORCH_CHECK_VALUE(scores.scalar_type() == at::kFloat || scores.scalar_type() == at::kDouble,
                    "graphforge::smallest_k: scores must be float32 or float64, got ",
                    scores.scalar_type());
  const int64_t M = scores.size(0), n = scores.size(1);
  TORCH_CHECK_VALUE(k >= 0 && k <= n, "graphforge::smallest_k: k must be in [0, ", n,
                    "] (the number of columns), got ", k);
  const bool rows_contiguous = scores.stride(1) == 1 && (M <= 1 || scores.stride(0) >= n);
  const at::Tensor s = rows_contiguous ? scores : scores.contiguous();
  const int64_t ld = s.stride(0);
  at::Tensor values = at::empty({M, k}, s.options());
  at::Tensor indices = at::empty({M, k}, s.options().dtype(at::kLong));
  if (M == 0 || k == 0) return {values, indices};
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "smallest_k_cpu", [&] {
    const scalar_t* S = s.data_ptr<scalar_t>();
    scalar_t* V = values.data_ptr<scalar_t>();
    int64_t* I = indices.data_ptr<int64_t>();
    at::parallel_for(0, M, 1, [&](int64_t r0, int64_t r1) {
      std::vector<Entry<scalar_t>> top(static_cast<size_t>(k));
      for (int64_t r = r0; r < r1; ++r) {
        int64_t count = 0;
        const scalar_t* row = S + r * ld;
        if (k > kSortedMaxK) {
          scan_heap(row, n, 0, -1, k, top.data(), count);
          std::sort(top.begin(), top.end(), entry_less<scalar_t>);
        } else {
          scan_sorted(row, n, 0, -1, k, top.data(), count);
        }
        for (int64_t e = 0; e < k; ++e) {
          V[r * k + e] = top[e].d;
          I[r * k + e] = top[e].i;
        }
      }
    });
  });
  return {values, indices};
}

// ---------------------------------------------------------------------------------------
// smallest_k_affine: the k smallest of bias[j] + alpha * dots[i, j] for each row i of an
// int32 matrix (the int8 candidate pass of the exact search: dots = q_int8 . x_int8 from an
// int8 GEMM, bias = |x_int8|^2, alpha = -2). The scores are formed a chunk at a time in a
// small per-thread buffer that stays in cache, so the [M, N] score matrix is never written.
// Integers: the scores are exact and so is their order, ties by the lower column.
// ---------------------------------------------------------------------------------------
std::tuple<at::Tensor, at::Tensor> smallest_k_affine_cpu(const at::Tensor& dots, const at::Tensor& bias,
                                                         int64_t alpha, int64_t k) {
  TORCH_CHECK(dots.device().is_cpu() && bias.device().is_cpu(),
              "graphforge::smallest_k_affine (CPU): dots and bias must be CPU tensors");
  TORCH_CHECK_VALUE(dots.dim() == 2 && dots.scalar_type() == at::kInt,
                    "graphforge::smallest_k_affine: dots must be a 2-D int32 tensor, got ",
                    dots.dim(), "-D ", dots.scalar_type());
  const int64_t M = dots.size(0), n = dots.size(1);
  TORCH_CHECK_VALUE(bias.dim() == 1 && bias.size(0) == n && bias.scalar_type() == at::kInt,
                    "graphforge::smallest_k_affine: bias must be int32 [", n, "] (one per column), got ",
                    bias.sizes(), " ", bias.scalar_type());
  TORCH_CHECK_VALUE(alpha >= INT32_MIN && alpha <= INT32_MAX,
                    "graphforge::smallest_k_affine: alpha must fit in int32, got ", alpha);
  TORCH_CHECK_VALUE(k >= 0 && k <= n, "graphforge::smallest_k_affine: k must be in [0, ", n,
                    "] (the number of columns), got ", k);
  const bool rows_contiguous = dots.stride(1) == 1 && (M <= 1 || dots.stride(0) >= n);
  const at::Tensor d = rows_contiguous ? dots : dots.contiguous();
  const at::Tensor b = bias.contiguous();
  const int64_t ld = d.stride(0);
  at::Tensor values = at::empty({M, k}, d.options());
  at::Tensor indices = at::empty({M, k}, d.options().dtype(at::kLong));
  if (M == 0 || k == 0) return {values, indices};
  constexpr int64_t kChunk = 4096;  // 16 KiB of scores: stays in L1 / L2
  const int32_t* D = d.data_ptr<int32_t>();
  const int32_t* Bv = b.data_ptr<int32_t>();
  int32_t* V = values.data_ptr<int32_t>();
  int64_t* I = indices.data_ptr<int64_t>();
  const int32_t a = static_cast<int32_t>(alpha);
  at::parallel_for(0, M, 1, [&](int64_t r0, int64_t r1) {
    std::vector<Entry<int32_t>> top(static_cast<size_t>(k));
    std::vector<int32_t> buf(static_cast<size_t>(std::min(n, kChunk)));
    for (int64_t r = r0; r < r1; ++r) {
      int64_t count = 0;
      const int32_t* row = D + r * ld;
      for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
        const int64_t nc = std::min(kChunk, n - c0);
        affine_int32(row + c0, Bv + c0, a, nc, buf.data());
        if (k > kSortedMaxK)
          scan_heap(buf.data(), nc, c0, -1, k, top.data(), count);
        else
          scan_sorted(buf.data(), nc, c0, -1, k, top.data(), count);
      }
      if (k > kSortedMaxK) std::sort(top.begin(), top.end(), entry_less<int32_t>);
      for (int64_t e = 0; e < k; ++e) {
        V[r * k + e] = top[e].d;
        I[r * k + e] = top[e].i;
      }
    }
  });
  return {values, indices};
}

// ---------------------------------------------------------------------------------------
// dropout_mask: a tensor shaped like `like` of 0 and 1 / (1 - p), each entry kept with
// probability 1 - p (to 1/65536). The bits come from a counter-based hash (SplitMix64's
// mixer) of (seed, index), 16 per entry, so the mask is the same for any number of threads
// and costs a fraction of a nanosecond per entry -- torch's CPU bernoulli_ draws one
// number at a time on one thread, and dropout was ~10 % of a dyn_knn training step.
// ---------------------------------------------------------------------------------------
namespace {
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <typename scalar_t>
GF_ALWAYS_INLINE void fill_mask_impl(scalar_t* out, int64_t w0, int64_t w1, int64_t n, uint64_t seed,
                                     uint32_t threshold, scalar_t scale) {
  const int64_t full = std::min(w1, n / 4);  // words whose 4 entries all exist
  for (int64_t w = w0; w < full; ++w) {
    const uint64_t h = mix64(seed + static_cast<uint64_t>(w + 1) * 0x9e3779b97f4a7c15ULL);
    scalar_t* o = out + w * 4;
    o[0] = static_cast<uint32_t>(h & 0xffffU) >= threshold ? scale : scalar_t(0);
    o[1] = static_cast<uint32_t>((h >> 16) & 0xffffU) >= threshold ? scale : scalar_t(0);
    o[2] = static_cast<uint32_t>((h >> 32) & 0xffffU) >= threshold ? scale : scalar_t(0);
    o[3] = static_cast<uint32_t>(h >> 48) >= threshold ? scale : scalar_t(0);
  }
  for (int64_t w = std::max(w0, full); w < w1; ++w) {  // the last, partial word
    const uint64_t h = mix64(seed + static_cast<uint64_t>(w + 1) * 0x9e3779b97f4a7c15ULL);
    for (int64_t e = w * 4, l = 0; e < n; ++e, ++l)
      out[e] = static_cast<uint32_t>((h >> (16 * l)) & 0xffffU) >= threshold ? scale : scalar_t(0);
  }
}
}  // namespace

at::Tensor dropout_mask_cpu(const at::Tensor& like, double p, int64_t seed) {
  TORCH_CHECK(like.device().is_cpu(), "graphforge::dropout_mask (CPU): like must be a CPU tensor");
  TORCH_CHECK_VALUE(at::isFloatingType(like.scalar_type()),
                    "graphforge::dropout_mask: like must be floating point, got ", like.scalar_type());
  TORCH_CHECK_VALUE(p >= 0.0 && p < 1.0, "graphforge::dropout_mask: p must be in [0, 1), got ", p);
  at::Tensor out = at::empty(like.sizes(), like.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t n = out.numel();
  if (n == 0) return out;
  const uint32_t threshold = static_cast<uint32_t>(std::llround(p * 65536.0));
  const uint64_t useed = mix64(static_cast<uint64_t>(seed));
  const int64_t words = (n + 3) / 4;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "dropout_mask_cpu", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t scale = static_cast<scalar_t>(1.0 / (1.0 - p));
    at::parallel_for(0, words, 16384, [&](int64_t w0, int64_t w1) {
      fill_mask_impl<scalar_t>(o, w0, w1, n, useed, threshold, scale);
    });
  });
  return out;
}

TORCH_LIBRARY_IMPL(graphforge, CPU, m) {
  m.impl("batched_knn", &batched_knn_cpu);
  m.impl("smallest_k", &smallest_k_cpu);
  m.impl("smallest_k_affine", &smallest_k_affine_cpu);
  m.impl("dropout_mask", &dropout_mask_cpu);
}

}  // namespace graphforge
