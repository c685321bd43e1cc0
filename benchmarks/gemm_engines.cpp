// Eigen against a CBLAS (OpenBLAS or BLIS, their serial builds) on the GEMM shapes biflow's layers run, one
// thread, float. Prints GFLOP/s per shape for both engines and, last, the rule BIFLOW_CPU_BLAS=auto applies:
//   crossover <flops>   the smallest m·n·k from which the BLAS is faster on this shape and on every larger one
//                       (-1: never; then auto keeps Eigen)
// CMake's probe (cmake/biflowCpuBlas.cmake) builds and runs it at configure time; run it yourself to see why:
//   build/benchmarks/gemm_engines            (built when a BLAS was found)
#include <cblas.h>

#include <Eigen/Dense>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace {
using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Shape {
  long m, k, n;
  bool trans_a, trans_b;  // C (m x n) = op(A) op(B)
  const char* what;
};

template <class F>
double best_seconds(F&& f) {
  f();  // warm-up (packing buffers, pages)
  double best = 1e30, total = 0;
  for (int r = 0; r < 200 && (r < 5 || total < 0.08); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    total += s;
  }
  return best;
}
}  // namespace

int main() {
  // Linear forward x Wᵀ (trans_b), weight gradient dyᵀ x (trans_a), input gradient dy W, for the toy flows
  // (batch 256, hidden 64), the digits TARFlow (128 images x 16 tokens, width 64, MLP 256) and wider models.
  const std::vector<Shape> shapes = {
      {256, 2, 64, false, true, "toy in"},          {256, 64, 64, false, true, "toy hidden"},
      {64, 256, 64, true, false, "toy dW"},         {256, 64, 4, false, true, "toy out"},
      {2048, 64, 64, false, true, "tar qkv/out"},   {2048, 64, 256, false, true, "tar mlp up"},
      {2048, 256, 64, false, true, "tar mlp down"}, {64, 2048, 256, true, false, "tar dW up"},
      {2048, 256, 64, false, false, "tar dx up"},   {2048, 256, 256, false, true, "w256"},
      {2048, 256, 1024, false, true, "w256 mlp"},   {2048, 1024, 256, false, true, "w256 mlp down"},
      {1024, 1024, 1024, false, false, "1024^3"},
  };
  std::printf("%-14s %6s %6s %6s %10s %10s %7s\n", "shape", "m", "k", "n", "eigen", "blas", "ratio");
  struct Row {
    double flops, ratio;
  };
  std::vector<Row> rows;
  for (const Shape& s : shapes) {
    const Mat A = Mat::Random(s.trans_a ? s.k : s.m, s.trans_a ? s.m : s.k);
    const Mat B = Mat::Random(s.trans_b ? s.n : s.k, s.trans_b ? s.k : s.n);
    Mat C(s.m, s.n);
    const double e = best_seconds([&] {
      if (!s.trans_a && !s.trans_b) C.noalias() = A * B;
      else if (!s.trans_a) C.noalias() = A * B.transpose();
      else if (!s.trans_b) C.noalias() = A.transpose() * B;
      else C.noalias() = A.transpose() * B.transpose();
    });
    const double b = best_seconds([&] {
      cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans,
                  int(s.m), int(s.n), int(s.k), 1.0f, A.data(), int(A.cols()), B.data(), int(B.cols()), 0.0f,
                  C.data(), int(C.cols()));
    });
    const double flops = 2.0 * double(s.m) * double(s.n) * double(s.k);
    std::printf("%-14s %6ld %6ld %6ld %10.1f %10.1f %7.2f\n", s.what, s.m, s.k, s.n, flops / e / 1e9, flops / b / 1e9,
                e / b);
    rows.push_back({double(s.m) * double(s.n) * double(s.k), e / b});
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.flops < b.flops; });
  double crossover = -1;
  for (std::size_t i = rows.size(); i-- > 0;) {
    if (rows[i].ratio <= 1.05) break;  // the BLAS must win by more than noise
    crossover = rows[i].flops;
  }
  std::printf("crossover %.0f\n", crossover);
  return 0;
}
