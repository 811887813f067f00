// OpenMP helpers: optional at build time, and deterministic by construction
// (work is split into fixed chunks whose partial sums are reduced in order).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "lftaccel/checks.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lftaccel {
namespace cpu {

// Below this many sites the fork/join cost of a parallel region outweighs the work.
constexpr int64_t kParallelMinSites = 1 << 15;

int max_nthreads();  // (cpu.hpp)

inline void check_threads(int nthreads) { checks::threads(nthreads, max_nthreads()); }

// nthreads <= 0: OpenMP's default, capped like an explicit count (OMP_NUM_THREADS set for a
// whole node in a container that holds a few of its cores would exceed it; the samplers hand
// the resolved count on to the Philox fill, which checks it).
inline int resolve_threads(int nthreads) {
#ifdef _OPENMP
  return nthreads > 0 ? nthreads : std::min(omp_get_max_threads(), max_nthreads());
#else
  (void)nthreads;
  return 1;
#endif
}

// Calls body(item) for item in [0, n_items), in parallel when total_sites is large.
// Items go to threads in fixed blocks (static), so that the passes of a sweep over the same
// items find each block's data in the same core's cache. With balance, for items that share
// no data between calls (a chain's whole HMC trajectory), threads take shrinking runs of
// consecutive items as they come free (guided): when one core is slowed by what else runs on
// it, the others take over its items (dynamic, 1 did too, but was 4 % slower on a quiet
// machine: consecutive chains lie next to each other in memory). A chain may then run on
// another core than in the last call; its fields did not stay in one core's L2 between
// calls anyway at the sizes where threads are used (64 x 64^2 float64: 0.715-0.722 ms a
// trajectory static, 0.719-0.722 guided). What an item computes never depends on its thread.
template <class Body>
void parallel_items(int64_t n_items, int64_t total_sites, int nthreads, const Body& body, bool balance = false) {
  const int nt = resolve_threads(nthreads);
#ifdef _OPENMP
  // A serial call must not open even an inactive region: the samplers call these
  // loops once per chain from inside their own parallel region, thousands of times.
  if (nt > 1 && total_sites >= kParallelMinSites && n_items > 1) {
    if (balance) {
#pragma omp parallel for schedule(guided) num_threads(nt)
      for (int64_t it = 0; it < n_items; ++it) body(it);
    } else {
#pragma omp parallel for schedule(static) num_threads(nt)
      for (int64_t it = 0; it < n_items; ++it) body(it);
    }
    return;
  }
#endif
  for (int64_t it = 0; it < n_items; ++it) body(it);
  (void)nt;
  (void)total_sites;
  (void)balance;
}

// action[b] = sum over c of partial[b * n_chunks + c], in a fixed order, so a
// configuration's action does not depend on which thread summed which chunk.
template <class T>
void sum_chunks(const std::vector<double>& partial, int64_t batch, int64_t n_chunks, T* action) {
  for (int64_t b = 0; b < batch; ++b) {
    double s = 0;
    for (int64_t c = 0; c < n_chunks; ++c) s += partial[b * n_chunks + c];
    action[b] = T(s);
  }
}

}  // namespace cpu
}  // namespace lftaccel
