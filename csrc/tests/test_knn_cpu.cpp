// C++ test of the CPU kernels (run by ctest; no test framework needed): batched KNN,
// smallest_k_affine and dropout_mask.
//
// Checks the kernel, called directly and through the dispatcher, against a brute force in
// double precision: every metric, mixed set sizes (empty, single point, larger than one
// candidate block), per-set k (0, clamped, over the heap cutoff), duplicates and errors.
#include "knn.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

namespace {

int g_failures = 0;
int g_checks = 0;

#define GF_CHECK(cond, ...)                                                 \
  do {                                                                   \
    ++g_checks;                                                          \
    if (!(cond)) {                                                       \
      ++g_failures;                                                      \
      std::fprintf(stderr, "%s:%d: GF_CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                 \
      std::fprintf(stderr, "\n");                                        \
    }                                                                    \
  } while (0)

double distance(const double* a, const double* b, int64_t D, const std::string& metric) {
  double s = 0, na = 0, nb = 0;
  for (int64_t d = 0; d < D; ++d) {
    const double t = a[d] - b[d];
    if (metric == "l2") s += t * t;
    else if (metric == "l1") s += std::abs(t);
    else if (metric == "linf") s = std::max(s, std::abs(t));
    else {
      s += a[d] * b[d];
      na += a[d] * a[d];
      nb += b[d] * b[d];
    }
  }
  if (metric == "l2") return std::sqrt(s);
  if (metric == "ip") return -s;
  if (metric == "cosine") return na > 0 && nb > 0 ? 1 - s / std::sqrt(na * nb) : 1.0;
  return s;
}

// Brute force: for each query, candidates sorted by (distance, index).
void check_against_brute_force(const at::Tensor& x, const std::vector<int64_t>& ptr,
                               const std::vector<int64_t>& k, const std::string& metric,
                               bool loop, double tol) {
  const at::Tensor ptr_t = at::tensor(ptr, at::kLong);
  const at::Tensor k_t = at::tensor(k, at::kLong);
  auto [dist, edge_index] = graphforge::batched_knn_cpu(x, ptr_t, k_t, metric, loop);
  const at::Tensor xd = x.to(at::kDouble).contiguous();
  const double* X = xd.data_ptr<double>();
  const int64_t D = x.size(1);
  const at::Tensor dd = dist.to(at::kDouble);
  const int64_t* src = edge_index.data_ptr<int64_t>();
  const int64_t E = edge_index.size(1);
  const int64_t* dst = src + E;
  const double* dv = dd.data_ptr<double>();
  int64_t e = 0;
  bool ok = true;
  for (size_t b = 0; b + 1 < ptr.size(); ++b) {
    const int64_t s = ptr[b], n = ptr[b + 1] - ptr[b];
    const int64_t kb = std::max<int64_t>(0, std::min(k[b], loop ? n : n - 1));
    for (int64_t q = s; q < s + n && kb > 0; ++q) {
      std::vector<std::pair<double, int64_t>> cand;
      for (int64_t j = s; j < s + n; ++j)
        if (loop || j != q) cand.push_back({distance(X + q * D, X + j * D, D, metric), j});
      std::stable_sort(cand.begin(), cand.end(),
                       [](const auto& a, const auto& c) { return a.first < c.first; });
      const bool near_tie = kb < static_cast<int64_t>(cand.size()) &&
                            cand[kb].first - cand[kb - 1].first <= tol * (1 + std::abs(cand[kb].first));
      for (int64_t r = 0; r < kb; ++r, ++e) {
        if (e >= E || dst[e] != q) {
          ok = false;
          break;
        }
        const double want = cand[r].first;
        if (std::abs(dv[e] - want) > tol * (1 + std::abs(want))) ok = false;
        if (!near_tie && src[e] != cand[r].second &&
            std::abs(cand[r].first - distance(X + q * D, X + src[e] * D, D, metric)) > tol)
          ok = false;
      }
    }
  }
  GF_CHECK(ok && e == E, "metric %s loop %d: result differs from the brute force (E = %lld, checked %lld)",
        metric.c_str(), static_cast<int>(loop), static_cast<long long>(E), static_cast<long long>(e));
}

void test_random_sets() {
  at::manual_seed(0);
  const std::vector<int64_t> sizes = {0, 1, 2, 9, 40, 130, 1100};
  const std::vector<int64_t> k = {3, 4, 1, 20, 0, 60, 7};
  std::vector<int64_t> ptr = {0};
  for (int64_t s : sizes) ptr.push_back(ptr.back() + s);
  for (auto dtype : {at::kDouble, at::kFloat}) {
    const at::Tensor x = at::randn({ptr.back(), 11}, at::kDouble).to(dtype);
    const double tol = dtype == at::kDouble ? 1e-9 : 2e-5;
    for (const std::string metric : {"l2", "cosine", "l1", "linf", "ip"})
      for (bool loop : {false, true}) check_against_brute_force(x, ptr, k, metric, loop, tol);
  }
}

void test_duplicates() {
  const at::Tensor x = at::ones({10, 3}, at::kFloat);
  auto [dist, ei] = graphforge::batched_knn_cpu(x, at::tensor({0L, 10L}), at::tensor({4L}), "l2", false);
  GF_CHECK(ei.size(1) == 40, "expected 40 edges, got %lld", static_cast<long long>(ei.size(1)));
  const std::vector<int64_t> want0 = {1, 2, 3, 4}, want5 = {0, 1, 2, 3};
  bool ok = true;
  for (int r = 0; r < 4; ++r) {
    ok &= ei[0][r].item<int64_t>() == want0[r];
    ok &= ei[0][5 * 4 + r].item<int64_t>() == want5[r];
  }
  GF_CHECK(ok, "duplicate points: ties must go to the lowest indices, self excluded");
  GF_CHECK(dist.abs().max().item<float>() == 0.f, "duplicate points must be at distance 0");
}

void test_dispatcher_and_half() {
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("graphforge::batched_knn", "")
                .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, c10::string_view, bool)>();
  const at::Tensor x = at::randn({50, 8}).to(at::kHalf);
  auto [dist, ei] = op.call(x, at::tensor({0L, 20L, 50L}), at::tensor({3L, 5L}), "l2", false);
  GF_CHECK(ei.size(1) == 20 * 3 + 30 * 5, "wrong edge count through the dispatcher");
  GF_CHECK(dist.scalar_type() == at::kHalf, "dist must keep the input dtype");
}

template <typename F>
bool throws(F&& f) {
  try {
    f();
  } catch (const c10::Error&) {
    return true;
  }
  return false;
}

void test_errors() {
  const at::Tensor x = at::randn({10, 3});
  GF_CHECK(throws([&] { graphforge::batched_knn_cpu(x, at::tensor({0L, 10L}), at::tensor({-1L}), "l2", false); }),
        "negative k must throw");
  GF_CHECK(throws([&] { graphforge::batched_knn_cpu(x, at::tensor({0L, 6L, 4L, 10L}), at::tensor({1L, 1L, 1L}), "l2", false); }),
        "decreasing ptr must throw");
  GF_CHECK(throws([&] { graphforge::batched_knn_cpu(x, at::tensor({0L, 9L}), at::tensor({1L}), "l2", false); }),
        "ptr not ending at N must throw");
  GF_CHECK(throws([&] { graphforge::batched_knn_cpu(x, at::tensor({0L, 10L}), at::tensor({1L}), "chord", false); }),
        "unknown metric must throw");
  at::Tensor y = x.clone();
  y[2][1] = std::nan("");
  GF_CHECK(throws([&] { graphforge::batched_knn_cpu(y, at::tensor({0L, 10L}), at::tensor({2L}), "l2", false); }),
        "NaN in x must throw");
}

void test_smallest_k_affine() {
  // Scores bias[j] + alpha * dots[i, j] with many ties, across the 4096-column chunks and
  // the sorted-array / heap switch: against a stable sort of the scores in int64.
  const int64_t M = 5, N = 9000;
  const at::Tensor dots = at::randint(-3, 4, {M, N}, at::kInt);
  const at::Tensor bias = at::randint(0, 5, {N}, at::kInt);
  const at::Tensor scores = bias.to(at::kLong).unsqueeze(0) - 2 * dots.to(at::kLong);
  for (int64_t k : {1L, 7L, 48L, 49L, 300L}) {
    auto [values, indices] = graphforge::smallest_k_affine_cpu(dots, bias, -2, k);
    auto [want, order] = at::sort(scores, /*stable=*/true, /*dim=*/1, /*descending=*/false);
    GF_CHECK(values.scalar_type() == at::kInt && indices.scalar_type() == at::kLong, "wrong dtypes");
    GF_CHECK(at::equal(values.to(at::kLong), want.narrow(1, 0, k)), "values differ at k = %ld", (long)k);
    GF_CHECK(at::equal(indices, order.narrow(1, 0, k)), "indices (ties to the lower column) differ at k = %ld",
             (long)k);
  }
  GF_CHECK(throws([&] { graphforge::smallest_k_affine_cpu(dots.to(at::kFloat), bias, -2, 1); }),
           "float dots must throw");
  GF_CHECK(throws([&] { graphforge::smallest_k_affine_cpu(dots, bias.narrow(0, 0, 10), -2, 1); }),
           "a bias of the wrong length must throw");
}

void test_dropout_mask() {
  const at::Tensor like = at::empty({301, 7});
  const at::Tensor a = graphforge::dropout_mask_cpu(like, 0.25, 5);
  const at::Tensor b = graphforge::dropout_mask_cpu(like, 0.25, 5);
  GF_CHECK(at::equal(a, b), "the same seed must give the same mask");
  const double zeros = (a == 0).to(at::kDouble).mean().item<double>();
  GF_CHECK(zeros > 0.2 && zeros < 0.3, "zero fraction %.3f, expected about 0.25", zeros);
  GF_CHECK(((a == 0) | (a == 1.f / 0.75f)).all().item<bool>(), "mask entries must be 0 or 1 / (1 - p)");
  GF_CHECK(throws([&] { graphforge::dropout_mask_cpu(like, 1.0, 0); }), "p = 1 must throw");
}

}  // namespace

int main() {
  test_smallest_k_affine();
  test_dropout_mask();
  test_random_sets();
  test_duplicates();
  test_dispatcher_and_half();
  test_errors();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
