// Compilation-target macros shared by every lftaccel header.
#pragma once

#if defined(__CUDACC__)
#define LFT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LFT_HOST_DEVICE inline
#endif

#define LFTACCEL_VERSION_STRING "0.1.0"
