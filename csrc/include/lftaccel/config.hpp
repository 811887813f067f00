// Compilation-target macros shared by every lftaccel header.
#pragma once

#if defined(__CUDACC__)
#define LFT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LFT_HOST_DEVICE inline
#endif

// Full unrolling of short fixed loops (Philox rounds, neighbour directions), so
// host compilers can vectorise the site loops around them.
// nvcc's host pass needs none (the CPU's hot loops are compiled from .cpp files), and would warn
// about either spelling: its front end does not know GCC's, GCC does not know CUDA's.
#if defined(__CUDA_ARCH__) || defined(__clang__)
#define LFT_UNROLL _Pragma("unroll")
#elif defined(__CUDACC__)
#define LFT_UNROLL
#elif defined(__GNUC__)
#define LFT_UNROLL _Pragma("GCC unroll 16")
#else
#define LFT_UNROLL
#endif

// Helpers that must be inlined into the CPU's vectorised site loops (a call per lane, or a
// helper GCC leaves out of line, serialises the loop).
#if defined(__CUDACC__)
#define LFT_FORCE_INLINE __forceinline__
#elif defined(__GNUC__)
#define LFT_FORCE_INLINE inline __attribute__((always_inline))
#else
#define LFT_FORCE_INLINE inline
#endif

// The same for a lambda, written after its parameter list: GCC compiled a row walk's site
// lambda out of line for the row's two end sites, where it fused multiply-adds differently,
// so the same action came out 1 ulp apart from another path's.
#if defined(__GNUC__) && !defined(__CUDACC__)
#define LFT_INLINE_LAMBDA __attribute__((always_inline))
#else
#define LFT_INLINE_LAMBDA
#endif

#define LFTACCEL_VERSION_STRING "0.1.0"

namespace lftaccel {
// Output pointers of the kernel entry points sit in this non-deduced context:
// T comes from the input, and nullptr may be passed for an unwanted output.
template <class T>
struct NonDeduced {
  using type = T;
};
template <class T>
using Out = typename NonDeduced<T>::type;
}  // namespace lftaccel
