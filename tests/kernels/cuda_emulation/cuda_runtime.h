// Host emulation of the few CUDA features kernels/linear_cuda.cu uses, so that its kernels can
// be run and checked on a machine without a GPU. Found first on the include path by the
// emulation build only; a real build uses the CUDA toolkit's <cuda_runtime.h>.
//
// A launch runs the grid's blocks one after another; each block runs its threads as CPU
// threads (threadIdx/blockIdx are thread_local), __shared__ variables become function-local
// statics (one copy, shared by the threads of the block that is running) and __syncthreads is
// a std::barrier across the block. A kernel in which some threads skip a __syncthreads
// deadlocks here, as it would misbehave on a GPU.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
struct alignas(16) double2 {
  double x, y;
};
inline double2 make_double2(double x, double y) { return double2{x, y}; }

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
typedef struct emulated_stream* cudaStream_t;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
// The emulated device has $EMU_SMS multiprocessors (default 132, an H100/H200): the launchers'
// choice of tile size depends on it, so the tests run once with 0 and once with a huge count.
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  const char* env = std::getenv("EMU_SMS");
  *value = env ? std::atoi(env) : 132;
  return cudaSuccess;
}
inline const char* cudaGetErrorString(cudaError_t) { return "emulated"; }

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
inline std::barrier<>* block_barrier = nullptr;
inline long launches = 0;

template <class Kernel, class... Args>
void launch(Kernel kernel, dim3 grid, dim3 block, Args... args) {
  ++launches;
  const std::ptrdiff_t threads = static_cast<std::ptrdiff_t>(block.x) * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        std::barrier<> barrier(threads);
        block_barrier = &barrier;
        std::vector<std::thread> pool;
        pool.reserve(threads);
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx)
              pool.emplace_back([=] {
                threadIdx = dim3(tx, ty, tz);
                blockIdx = dim3(bx, by, bz);
                blockDim = block;
                gridDim = grid;
                kernel(args...);
              });
        for (auto& t : pool) t.join();
      }
}
}  // namespace emu

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

#define GV_LAUNCH(kernel, grid, block, stream, ...) \
  emu::launch(kernel, dim3(grid), dim3(block), __VA_ARGS__)
