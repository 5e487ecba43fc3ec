// Runs the extern "C" launchers of kernels/linear_cuda.cu under the host emulation
// (cuda_runtime.h in this directory), in float32 and in float64, and compares every result with
// a double-precision reference. Usage: harness M,K,N[,misaligned] ...   Prints one line per case
// and dtype; exit 1 on a mismatch. "misaligned" offsets every buffer by one value, forcing the
// scalar load paths.
// EMU_SMS=0 makes the launchers pick 128 x 128 tiles, a huge EMU_SMS 64 x 64 tiles.
#include "../../../kernels/linear_cuda.cu"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

namespace {

template <typename T>
struct Buffer {
  std::vector<T> storage;
  T* p;
  Buffer(size_t n, bool misaligned, std::mt19937& rng) : storage(n + 64 / sizeof(T) + 1) {
    std::normal_distribution<T> dist;
    for (auto& v : storage) v = dist(rng);
    // a 64-byte aligned start (the vector's data is at least 16-byte aligned), or one value past it
    auto base = reinterpret_cast<uintptr_t>(storage.data());
    const size_t skip = ((64 - base % 64) % 64) / sizeof(T);
    p = storage.data() + skip + (misaligned ? 1 : 0);
  }
};

cudaError_t forward(const float* x, const float* w, const float* b, float* out, int64_t M,
                    int64_t N, int64_t K) {
  return gradviz_linear_forward_f32(x, w, b, out, M, N, K, nullptr);
}
cudaError_t forward(const double* x, const double* w, const double* b, double* out, int64_t M,
                    int64_t N, int64_t K) {
  return gradviz_linear_forward_f64(x, w, b, out, M, N, K, nullptr);
}
cudaError_t grad_input(const float* g, const float* w, float* out, int64_t M, int64_t N, int64_t K) {
  return gradviz_linear_grad_input_f32(g, w, out, M, N, K, nullptr);
}
cudaError_t grad_input(const double* g, const double* w, double* out, int64_t M, int64_t N,
                       int64_t K) {
  return gradviz_linear_grad_input_f64(g, w, out, M, N, K, nullptr);
}
cudaError_t grad_weight(const float* g, const float* x, float* out, int64_t M, int64_t N,
                        int64_t K) {
  return gradviz_linear_grad_weight_f32(g, x, out, M, N, K, nullptr);
}
cudaError_t grad_weight(const double* g, const double* x, double* out, int64_t M, int64_t N,
                        int64_t K) {
  return gradviz_linear_grad_weight_f64(g, x, out, M, N, K, nullptr);
}
cudaError_t grad_bias(const float* g, float* out, int64_t M, int64_t N) {
  return gradviz_linear_grad_bias_f32(g, out, M, N, nullptr);
}
cudaError_t grad_bias(const double* g, double* out, int64_t M, int64_t N) {
  return gradviz_linear_grad_bias_f64(g, out, M, N, nullptr);
}

// worst |got - want| / (1 + |want|) over n values
template <typename T>
double worst(const T* got, const std::vector<double>& want) {
  double w = 0;
  for (size_t i = 0; i < want.size(); ++i)
    w = std::max(w, std::fabs(got[i] - want[i]) / (1.0 + std::fabs(want[i])));
  return w;
}

template <typename T>
bool run_case(int64_t M, int64_t K, int64_t N, bool misaligned, std::mt19937& rng) {
  Buffer<T> x(M * K, misaligned, rng), w(N * K, misaligned, rng), b(N, misaligned, rng),
      g(M * N, misaligned, rng), out(M * N, misaligned, rng), gin(M * K, misaligned, rng),
      gw(N * K, misaligned, rng), gb(N, misaligned, rng);
  std::vector<double> r_out(M * N), r_gin(M * K), r_gw(N * K), r_gb(N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = b.p[n];
      for (int64_t k = 0; k < K; ++k) s += double(x.p[m * K + k]) * w.p[n * K + k];
      r_out[m * N + n] = s;
    }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      double s = 0;
      for (int64_t n = 0; n < N; ++n) s += double(g.p[m * N + n]) * w.p[n * K + k];
      r_gin[m * K + k] = s;
    }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      double s = 0;
      for (int64_t m = 0; m < M; ++m) s += double(g.p[m * N + n]) * x.p[m * K + k];
      r_gw[n * K + k] = s;
    }
  for (int64_t n = 0; n < N; ++n) {
    double s = 0;
    for (int64_t m = 0; m < M; ++m) s += g.p[m * N + n];
    r_gb[n] = s;
  }
  bool ok = forward(x.p, w.p, b.p, out.p, M, N, K) == cudaSuccess;
  ok &= grad_input(g.p, w.p, gin.p, M, N, K) == cudaSuccess;
  ok &= grad_weight(g.p, x.p, gw.p, M, N, K) == cudaSuccess;
  ok &= grad_bias(g.p, gb.p, M, N) == cudaSuccess;
  const double e[4] = {worst(out.p, r_out), worst(gin.p, r_gin), worst(gw.p, r_gw),
                       worst(gb.p, r_gb)};
  // float32: rounding of sums of up to depth terms; float64: the same, 2^29 times finer
  const double unit = sizeof(T) == sizeof(float) ? 1e-5 : 1e-13;
  const double tol = unit * (1 + std::sqrt(double(std::max({M, N, K}))));
  for (double v : e) ok &= v <= tol;
  std::printf("%s %s M=%lld K=%lld N=%lld%s forward %.2e grad_input %.2e grad_weight %.2e "
              "grad_bias %.2e (tol %.1e)\n", ok ? "ok  " : "FAIL",
              sizeof(T) == sizeof(float) ? "f32" : "f64", (long long)M, (long long)K,
              (long long)N, misaligned ? " misaligned" : "", e[0], e[1], e[2], e[3], tol);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::mt19937 rng(7);
  bool all = true;
  for (int i = 1; i < argc; ++i) {
    long long M, K, N;
    char extra[32] = "";
    if (std::sscanf(argv[i], "%lld,%lld,%lld,%31s", &M, &K, &N, extra) < 3) {
      std::fprintf(stderr, "bad case %s\n", argv[i]);
      return 2;
    }
    const bool misaligned = std::strcmp(extra, "misaligned") == 0;
    all &= run_case<float>(M, K, N, misaligned, rng);
    all &= run_case<double>(M, K, N, misaligned, rng);
  }
  std::printf("launches %ld\n", emu::launches);
  return all ? 0 : 1;
}
