// CUDA kernel of graphforge::batched_knn (semantics in csrc/knn.h).
//
// Plan (all on the device): one thread per set computes its clamped k, its edge count and
// its number of query tiles; two cumsums give the output offsets and the tile offsets.
// The host learns the edge total, the tile total, k_max and the validity flags in a single
// device-to-host copy (it must know the edge total to allocate the output); the hot kernel
// then runs without any further synchronisation.
//
// Hot kernel: one block per (set, tile of 64 queries); a set with more than 64 points gets
// several blocks. The block walks the set's candidates in tiles of 64: both tiles go through
// shared memory in slices of 32 dimensions, each of the 256 threads computes a 4 x 4 patch of
// the 64 x 64 distance tile in registers (direct differences for l2 / l1 / linf, so no
// cancellation; dot products for cosine / ip), the tile is staged in shared memory, and one
// thread per query folds its row into that query's top-k. For k <= 32 the top-k lives in
// registers (sorted, compare-and-swap insertion, fully unrolled); larger k uses a sorted list
// in a global scratch buffer at the query's own output slots. Ties go to the lower index.
#include "../knn.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <climits>
#include <type_traits>

namespace graphforge {
namespace {

constexpr int kTQ = 64;   // queries per block
constexpr int kTC = 64;   // candidates per tile
constexpr int kTD = 32;   // dimensions per shared-memory slice
constexpr int kThreads = 256;
constexpr int kPlanThreads = 256;

enum Family : int { kDot = 0, kL2 = 1, kL1 = 2, kLinf = 3 };

template <typename acc_t, int F>
__device__ __forceinline__ acc_t accumulate(acc_t acc, acc_t a, acc_t b) {
  if constexpr (F == kDot) {
    return fma(a, b, acc);
  } else if constexpr (F == kL2) {
    const acc_t t = a - b;
    return fma(t, t, acc);
  } else if constexpr (F == kL1) {
    return acc + fabs(a - b);
  } else {
    return fmax(acc, fabs(a - b));
  }
}

template <typename acc_t>
__device__ __forceinline__ bool pair_less(acc_t da, int ia, acc_t db, int ib) {
  return da < db || (da == db && ia < ib);
}

__global__ void plan_kernel(const int64_t* __restrict__ ptr, const int64_t* __restrict__ k,
                            int64_t B, int64_t N, bool loop, int64_t* __restrict__ keff,
                            int64_t* __restrict__ count, int64_t* __restrict__ tiles,
                            int64_t* __restrict__ stats /* kmax, bad_order, bad_k, bad_ends, max_n */) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b == 0 && (ptr[0] != 0 || ptr[B] != N)) stats[3] = 1;
  if (b >= B) return;
  int64_t n = ptr[b + 1] - ptr[b];
  if (n < 0) {
    stats[1] = 1;
    n = 0;
  }
  const int64_t kb = k[b];
  if (kb < 0) stats[2] = 1;
  int64_t ke = kb < (loop ? n : n - 1) ? kb : (loop ? n : n - 1);
  ke = ke < 0 ? 0 : ke;
  keff[b] = ke;
  count[b] = n * ke;
  tiles[b] = ke > 0 ? (n + kTQ - 1) / kTQ : 0;
  atomicMax(reinterpret_cast<unsigned long long*>(stats), static_cast<unsigned long long>(ke));
  atomicMax(reinterpret_cast<unsigned long long*>(stats + 4), static_cast<unsigned long long>(n));
}

// Stable insertion sort of one query's output by (distance as stored, index).
template <typename scalar_t>
__device__ void fixup_sort(scalar_t* dist, int64_t* src, int64_t K) {
  for (int64_t e = 1; e < K; ++e) {
    const scalar_t vd = dist[e];
    const int64_t vs = src[e];
    const float vf = static_cast<float>(vd);
    int64_t p = e;
    while (p > 0) {
      const float pf = static_cast<float>(dist[p - 1]);
      if (!(pf > vf || (pf == vf && src[p - 1] > vs))) break;
      dist[p] = dist[p - 1];
      src[p] = src[p - 1];
      --p;
    }
    dist[p] = vd;
    src[p] = vs;
  }
}

template <>
__device__ void fixup_sort<double>(double* dist, int64_t* src, int64_t K) {
  for (int64_t e = 1; e < K; ++e) {
    const double vd = dist[e];
    const int64_t vs = src[e];
    int64_t p = e;
    while (p > 0 && (dist[p - 1] > vd || (dist[p - 1] == vd && src[p - 1] > vs))) {
      dist[p] = dist[p - 1];
      src[p] = src[p - 1];
      --p;
    }
    dist[p] = vd;
    src[p] = vs;
  }
}

template <typename acc_t, int F>
__device__ __forceinline__ acc_t final_distance(acc_t v) {
  if constexpr (F == kL2) return sqrt(v);
  return v;
}

// KREG > 0: top-k in registers (KREG >= k of every set); KREG == 0: general path.
template <typename scalar_t, typename acc_t, int F, int KREG>
__global__ void __launch_bounds__(kThreads)
knn_tile_kernel(const scalar_t* __restrict__ x, int64_t D, const int64_t* __restrict__ ptr,
                int64_t B, const int64_t* __restrict__ keff, const int64_t* __restrict__ out_off,
                const int64_t* __restrict__ tile_off, const acc_t* __restrict__ inv_norm,
                bool negate_dot, bool loop, int64_t* __restrict__ out_src,
                int64_t* __restrict__ out_dst, scalar_t* __restrict__ out_dist,
                acc_t* __restrict__ scratch) {
  constexpr int kStage = 2 * kTD * (kTQ + 1);
  constexpr int kTile = kTQ * (kTC + 1);
  __shared__ acc_t smem[kStage > kTile ? kStage : kTile];
  acc_t* As = smem;                     // [kTD][kTQ + 1]
  acc_t* Bs = smem + kTD * (kTQ + 1);   // [kTD][kTC + 1]
  acc_t* Dt = smem;                     // [kTQ][kTC + 1], reuses the staging area

  // Which set and which tile of its queries.
  const int64_t tile = blockIdx.x;
  int64_t lo = 0, hi = B - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (tile_off[mid] <= tile) lo = mid; else hi = mid - 1;
  }
  const int64_t b = lo;
  const int64_t start = ptr[b];
  const int n = static_cast<int>(ptr[b + 1] - start);
  const int64_t K = keff[b];
  const int q0 = static_cast<int>(tile - tile_off[b]) * kTQ;

  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int my_q = q0 + tid;  // the query this thread selects for (tid < kTQ)
  const bool selector = tid < kTQ && my_q < n;
  const int64_t my_off = out_off[b] + static_cast<int64_t>(my_q) * K;

  acc_t bd[KREG > 0 ? KREG : 1];
  int bi[KREG > 0 ? KREG : 1];
#pragma unroll
  for (int s = 0; s < (KREG > 0 ? KREG : 1); ++s) {
    bd[s] = INFINITY;
    bi[s] = INT_MAX;
  }
  int64_t count = 0;       // general path: entries in the scratch list
  acc_t worst = INFINITY;  // general path: its last distance once full

  for (int c0 = 0; c0 < n; c0 += kTC) {
    acc_t acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = acc_t(0);

    for (int64_t d0 = 0; d0 < D; d0 += kTD) {
#pragma unroll
      for (int r = 0; r < kTQ * kTD / kThreads; ++r) {
        const int e = tid + r * kThreads;
        const int row = e / kTD, dd = e % kTD;
        const int64_t d = d0 + dd;
        acc_t va = acc_t(0), vb = acc_t(0);
        if (d < D) {
          if (q0 + row < n) {
            const int64_t g = start + q0 + row;
            va = static_cast<acc_t>(x[g * D + d]);
            if (inv_norm != nullptr) va *= inv_norm[g];
          }
          if (c0 + row < n) {
            const int64_t g = start + c0 + row;
            vb = static_cast<acc_t>(x[g * D + d]);
            if (inv_norm != nullptr) vb *= inv_norm[g];
          }
        }
        As[dd * (kTQ + 1) + row] = va;
        Bs[dd * (kTC + 1) + row] = vb;
      }
      __syncthreads();
#pragma unroll 8
      for (int dd = 0; dd < kTD; ++dd) {
        acc_t a[4], c[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = As[dd * (kTQ + 1) + ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; ++j) c[j] = Bs[dd * (kTC + 1) + tx + 16 * j];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = accumulate<acc_t, F>(acc[i][j], a[i], c[j]);
      }
      __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        acc_t v = acc[i][j];
        if constexpr (F == kDot) v = negate_dot ? -v : acc_t(1) - v;
        Dt[(ty + 16 * i) * (kTC + 1) + tx + 16 * j] = v;
      }
    __syncthreads();

    if (selector) {
      const int nc = min(kTC, n - c0);
      const acc_t* row = Dt + tid * (kTC + 1);
      for (int jj = 0; jj < nc; ++jj) {
        const int j = c0 + jj;
        if (!loop && j == my_q) continue;
        const acc_t v = row[jj];
        if constexpr (KREG > 0) {
          if (!pair_less(v, j, bd[KREG - 1], bi[KREG - 1])) continue;
          acc_t cd = v;
          int ci = j;
#pragma unroll
          for (int s = 0; s < KREG; ++s) {
            if (pair_less(cd, ci, bd[s], bi[s])) {
              const acc_t td = bd[s];
              const int ti = bi[s];
              bd[s] = cd;
              bi[s] = ci;
              cd = td;
              ci = ti;
            }
          }
        } else {
          int64_t p;
          if (count < K) {
            p = count++;
          } else if (v < worst) {  // candidates arrive by index: a tie keeps the incumbent
            p = K - 1;
          } else {
            continue;
          }
          acc_t* sd = scratch + my_off;
          int64_t* si = out_src + my_off;
          while (p > 0 && sd[p - 1] > v) {
            sd[p] = sd[p - 1];
            si[p] = si[p - 1];
            --p;
          }
          sd[p] = v;
          si[p] = j;
          if (count == K) worst = sd[K - 1];
        }
      }
    }
    __syncthreads();
  }

  if (!selector) return;
  scalar_t* od = out_dist + my_off;
  int64_t* os = out_src + my_off;
  int64_t* ot = out_dst + my_off;
  if constexpr (KREG > 0) {
#pragma unroll
    for (int s = 0; s < KREG; ++s) {
      if (s < K) {
        acc_t v = final_distance<acc_t, F>(bd[s]);
        if (F == kDot && !negate_dot) v = v > acc_t(0) ? v : acc_t(0);
        od[s] = static_cast<scalar_t>(v);
        os[s] = start + bi[s];
        ot[s] = start + my_q;
      }
    }
  } else {
    const acc_t* sd = scratch + my_off;
    for (int64_t s = 0; s < K; ++s) {
      acc_t v = final_distance<acc_t, F>(sd[s]);
      if (F == kDot && !negate_dot) v = v > acc_t(0) ? v : acc_t(0);
      od[s] = static_cast<scalar_t>(v);
      os[s] = start + os[s];
      ot[s] = start + my_q;
    }
  }
  fixup_sort(od, os, K);
}

template <typename scalar_t, typename acc_t, int F>
void launch_family(int kreg, dim3 grid, cudaStream_t stream, const scalar_t* x, int64_t D,
                   const int64_t* ptr, int64_t B, const int64_t* keff, const int64_t* out_off,
                   const int64_t* tile_off, const acc_t* inv_norm, bool negate_dot, bool loop,
                   int64_t* out_src, int64_t* out_dst, scalar_t* out_dist, acc_t* scratch) {
#define GF_LAUNCH(KR)                                                                          \
  knn_tile_kernel<scalar_t, acc_t, F, KR><<<grid, kThreads, 0, stream>>>(                    \
      x, D, ptr, B, keff, out_off, tile_off, inv_norm, negate_dot, loop, out_src, out_dst,    \
      out_dist, scratch)
  switch (kreg) {
    case 8: GF_LAUNCH(8); break;
    case 16: GF_LAUNCH(16); break;
    case 32: GF_LAUNCH(32); break;
    default: GF_LAUNCH(0); break;
  }
#undef GF_LAUNCH
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor exclusive_cumsum(const at::Tensor& v) {
  return at::cat({at::zeros({1}, v.options()), at::cumsum(v, 0)});
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> batched_knn_cuda(const at::Tensor& x, const at::Tensor& ptr,
                                                    const at::Tensor& k,
                                                    c10::string_view metric_name, bool loop) {
  const Metric metric = parse_metric(metric_name);
  TORCH_CHECK(x.is_cuda() && ptr.device() == x.device() && k.device() == x.device(),
              "graphforge::batched_knn (CUDA): x, ptr and k must be on the same CUDA device");
  const int64_t B = check_knn_arguments(x, ptr, k);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor xc = x.contiguous(), ptr_c = ptr.contiguous(), k_c = k.contiguous();
  const int64_t N = xc.size(0), D = xc.size(1);
  const auto lopts = ptr.options();

  at::Tensor keff = at::empty({B}, lopts), count = at::empty({B}, lopts),
             tiles = at::empty({B}, lopts), stats = at::zeros({5}, lopts);
  {
    const int64_t blocks = B > 0 ? (B + kPlanThreads - 1) / kPlanThreads : 1;
    plan_kernel<<<blocks, kPlanThreads, 0, stream>>>(
        ptr_c.data_ptr<int64_t>(), k_c.data_ptr<int64_t>(), B, N, loop,
        keff.data_ptr<int64_t>(), count.data_ptr<int64_t>(), tiles.data_ptr<int64_t>(),
        stats.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const at::Tensor out_off = exclusive_cumsum(count);
  const at::Tensor tile_off = exclusive_cumsum(tiles);
  const at::Tensor finite = N > 0 ? at::isfinite(xc).all().to(at::kLong).reshape({1})
                                  : at::ones({1}, lopts);
  // The one device-to-host copy: [E, tiles, kmax, bad_order, bad_k, bad_ends, max_n, finite].
  const at::Tensor summary =
      at::cat({out_off.slice(0, B, B + 1), tile_off.slice(0, B, B + 1), stats, finite}).cpu();
  const int64_t* S = summary.data_ptr<int64_t>();
  const int64_t E = S[0], n_tiles = S[1], kmax = S[2];
  TORCH_CHECK_VALUE(S[5] == 0, "graphforge::batched_knn: ptr must start at 0 and end at N = ", N);
  TORCH_CHECK_VALUE(S[3] == 0, "graphforge::batched_knn: ptr must be non-decreasing");
  TORCH_CHECK_VALUE(S[4] == 0, "graphforge::batched_knn: k must be >= 0");
  TORCH_CHECK_VALUE(S[7] == 1, "graphforge::batched_knn: x contains NaN or Inf");
  TORCH_CHECK_VALUE(S[6] < INT_MAX, "graphforge::batched_knn: sets of 2^31 points or more are "
                    "not supported on CUDA");

  at::Tensor edge_index = at::empty({2, E}, lopts);
  at::Tensor dist = at::empty({E}, x.options());
  if (E == 0) return {dist, edge_index};
  const int kreg = kmax <= 8 ? 8 : kmax <= 16 ? 16 : kmax <= 32 ? 32 : 0;
  const dim3 grid(static_cast<unsigned int>(n_tiles));

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "batched_knn_cuda",
                                  [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
    at::Tensor inv_norm;
    if (metric == Metric::Cosine) {
      const at::Tensor nrm = xc.to(acc_type).pow(2).sum(1).sqrt();
      inv_norm = at::where(nrm > 0, nrm.reciprocal(), at::zeros_like(nrm));
    }
    at::Tensor scratch;
    if (kreg == 0) scratch = at::empty({E}, x.options().dtype(acc_type));
    const acc_t* inv = inv_norm.defined() ? inv_norm.data_ptr<acc_t>() : nullptr;
    acc_t* scr = scratch.defined() ? scratch.data_ptr<acc_t>() : nullptr;
    int64_t* src = edge_index.data_ptr<int64_t>();
    auto args = std::make_tuple(xc.data_ptr<scalar_t>(), D, ptr_c.data_ptr<int64_t>(), B,
                                keff.data_ptr<int64_t>(), out_off.data_ptr<int64_t>(),
                                tile_off.data_ptr<int64_t>(), inv, metric == Metric::IP, loop,
                                src, src + E, dist.data_ptr<scalar_t>(), scr);
    auto launch = [&](auto family) {
      std::apply(
          [&](auto... a) {
            launch_family<scalar_t, acc_t, decltype(family)::value>(kreg, grid, stream, a...);
          },
          args);
    };
    switch (metric) {
      case Metric::L2: launch(std::integral_constant<int, kL2>{}); break;
      case Metric::L1: launch(std::integral_constant<int, kL1>{}); break;
      case Metric::Linf: launch(std::integral_constant<int, kLinf>{}); break;
      default: launch(std::integral_constant<int, kDot>{}); break;
    }
  });
  return {dist, edge_index};
}

int64_t cuda_build_version() { return CUDART_VERSION; }

TORCH_LIBRARY_IMPL(graphforge, CUDA, m) { m.impl("batched_knn", &batched_knn_cuda); }

}  // namespace graphforge
