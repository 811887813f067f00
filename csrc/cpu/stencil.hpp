// CPU driver for nearest-neighbour stencils whose per-site functions take the
// field value and its forward/backward neighbours (phi^4, the oscillator path).
//
// A configuration is walked row by row along its contiguous last dimension:
// neighbours in the outer dimensions come from whole neighbour rows, and the
// wrap-around of the last dimension is peeled off both ends, so the middle of
// each row is a branch-free loop the compiler vectorises.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "lftaccel/lattice.hpp"
#include "parallel.hpp"

namespace lftaccel {
namespace cpu {

constexpr int64_t kChunkSites = 4096;  // granularity of work items and partial sums

// Coordinates of the outer dimensions 0..D-2 of a row, advanced like an
// odometer so that neighbour rows cost no integer division.
template <int D>
struct RowWalker {
  int64_t coord[D > 1 ? D - 1 : 1] = {};

  RowWalker(const Lattice& lat, int64_t row) {
    for (int mu = D - 2; mu >= 0; --mu) {
      coord[mu] = row % lat.extent[mu];
      row /= lat.extent[mu];
    }
  }
  int64_t forward(const Lattice& lat, int64_t base, int mu) const {
    return coord[mu] + 1 == lat.extent[mu] ? base - (lat.extent[mu] - 1) * lat.stride[mu]
                                           : base + lat.stride[mu];
  }
  int64_t backward(const Lattice& lat, int64_t base, int mu) const {
    return coord[mu] == 0 ? base + (lat.extent[mu] - 1) * lat.stride[mu] : base - lat.stride[mu];
  }
  // Start of the forward / backward neighbour row along each outer dimension.
  template <class T>
  void neighbour_rows(const Lattice& lat, const T* x, int64_t base, const T** fr, const T** br) const {
    for (int mu = 0; mu < D - 1; ++mu) {
      fr[mu] = x + forward(lat, base, mu);
      br[mu] = x + backward(lat, base, mu);
    }
  }
  void next(const Lattice& lat) {
    for (int mu = D - 2; mu >= 0; --mu) {
      if (++coord[mu] < lat.extent[mu]) return;
      coord[mu] = 0;
    }
  }
};

// Per-thread scratch for a chunk of rows: the current row with one halo site
// either side (so the last dimension's wrap-around needs no peeled iterations),
// and one action accumulator per position in the row (so rows end without a
// horizontal reduction). Both stay in L1 for rows of up to a few thousand sites.
template <class T>
struct RowScratch {
  std::vector<T> halo;
  std::vector<T> lanes;  // T, not double, for the public kernels: float32 keeps its vector width
};

template <class T>
RowScratch<T>& row_scratch() {
  thread_local RowScratch<T> s;
  return s;
}

// Rows of at least this many sites take the peeled loop (no copy; one horizontal
// reduction per row); shorter rows take the halo copy and per-lane accumulators.
constexpr int64_t kLongRow = 64;
// Sites summed in the field's precision before the sum moves to double.
constexpr int64_t kSumBlock = 1024;

// Sum is the type partial sums run in: T for the public kernels (float32 keeps its
// vector width, blocks move to double), double when the caller wants the action in
// double (the samplers' dH).
template <int D, bool A, bool G, class Sum, class Site, class T>
double stencil_long_rows(const Site& site, const Lattice& lat, const T* x, T* grad, int64_t r0,
                         int64_t r1) {
  const int64_t L = lat.extent[D - 1];
  const Site site_ = site;  // a local copy: no store to grad can alias its parameters
  double acc = 0;
  RowWalker<D> walk(lat, r0);
  for (int64_t r = r0; r < r1; ++r, walk.next(lat)) {
    const int64_t base = r * L;
    const T* row = x + base;
    const T* fr[D];
    const T* br[D];
    walk.neighbour_rows(lat, x, base, fr, br);
    T* __restrict g = G ? grad + base : nullptr;  // never overlaps x (the bindings check)
    auto body = [=](int64_t i, int64_t ip, int64_t im) -> T {
      T f[D], b[D];
      for (int mu = 0; mu < D - 1; ++mu) {
        f[mu] = fr[mu][i];
        b[mu] = br[mu][i];
      }
      f[D - 1] = row[ip];
      b[D - 1] = row[im];
      if (A && G) return site_.template action_grad<D>(row[i], f, b, g[i]);
      if (G) g[i] = site_.template grad<D>(row[i], f, b);
      return A ? site_.template action<D>(row[i], f) : T(0);
    };
    // Blocks of kSumBlock sites accumulate in T (float32 keeps its vector width),
    // blocks in double, so long rows lose no float32 precision.
    acc += double(body(0, 1, L - 1)) + double(body(L - 1, 0, L - 2));
    for (int64_t i0 = 1; i0 < L - 1; i0 += kSumBlock) {
      const int64_t i1 = std::min(L - 1, i0 + kSumBlock);
      Sum block = 0;
#pragma omp simd reduction(+ : block)
      for (int64_t i = i0; i < i1; ++i) block += Sum(body(i, i + 1, i - 1));
      acc += double(block);
    }
  }
  return acc;
}

template <int D, bool A, bool G, class Sum, class Site, class T>
double stencil_rows(const Site& site, const Lattice& lat, const T* x, T* grad, int64_t r0,
                    int64_t r1) {
  const int64_t L = lat.extent[D - 1];
  if (L >= kLongRow) return stencil_long_rows<D, A, G, Sum>(site, lat, x, grad, r0, r1);
  const Site site_ = site;  // a local copy: no store to grad can alias its parameters
  RowScratch<T>& scratch = row_scratch<T>();
  RowScratch<Sum>& sums = row_scratch<Sum>();
  scratch.halo.resize(L + 2);
  if (A) sums.lanes.assign(L, Sum(0));
  T* const halo = scratch.halo.data();
  Sum* const lanes = sums.lanes.data();
  RowWalker<D> walk(lat, r0);
  for (int64_t r = r0; r < r1; ++r, walk.next(lat)) {
    const int64_t base = r * L;
    const T* row = x + base;
    halo[0] = row[L - 1];
    std::copy(row, row + L, halo + 1);
    halo[L + 1] = row[0];
    const T* fr[D];
    const T* br[D];
    walk.neighbour_rows(lat, x, base, fr, br);
    // grad never overlaps x (the bindings check), which spares the loop a
    // run-time alias test.
    T* __restrict g = G ? grad + base : nullptr;
    const T* h = halo + 1;
    auto body = [=](int64_t i) {
      T f[D], b[D];
      for (int mu = 0; mu < D - 1; ++mu) {
        f[mu] = fr[mu][i];
        b[mu] = br[mu][i];
      }
      f[D - 1] = h[i + 1];
      b[D - 1] = h[i - 1];
      if (A && G) return site_.template action_grad<D>(h[i], f, b, g[i]);
      if (G) g[i] = site_.template grad<D>(h[i], f, b);
      return A ? site_.template action<D>(h[i], f) : T(0);
    };
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) {
      if (A) lanes[i] += Sum(body(i));
      else body(i);
    }
  }
  double acc = 0;
  if (A)
    for (int64_t i = 0; i < L; ++i) acc += lanes[i];
  return acc;
}

// Acc is the type of the per-configuration action (T for the public kernels,
// double for the samplers, whose dH must not be rounded to float32).
template <int D, bool A, bool G, class Site, class T, class Acc>
void stencil_run(const Site& site, const Lattice& lat, int64_t batch, const T* x, Acc* action, T* grad,
                 int nthreads) {
  const int64_t L = lat.extent[D - 1];
  const int64_t rows = lat.volume / L;
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkSites / L);
  const int64_t n_chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  std::vector<double> partial(A ? batch * n_chunks : 0);
  parallel_items(batch * n_chunks, batch * lat.volume, nthreads, [&](int64_t it) {
    const int64_t b = it / n_chunks, c = it % n_chunks;
    const int64_t r0 = c * rows_per_chunk, r1 = std::min(rows, r0 + rows_per_chunk);
    const int64_t off = b * lat.volume;
    using Sum = std::conditional_t<std::is_same_v<Acc, double>, double, T>;
    const double s = stencil_rows<D, A, G, Sum>(site, lat, x + off, G ? grad + off : nullptr, r0, r1);
    if (A) partial[it] = s;
  });
  if (A) sum_chunks(partial, batch, n_chunks, action);
}

// Calls f(rank, want_action, want_grad) with each as a compile-time constant:
// the compiled variant for this lattice rank and these outputs (none: no call).
template <class F>
void dispatch_variant(int ndim, bool want_action, bool want_grad, const F& f) {
  auto outputs = [&](auto dim) {
    if (want_action && want_grad) f(dim, std::true_type{}, std::true_type{});
    else if (want_action) f(dim, std::true_type{}, std::false_type{});
    else if (want_grad) f(dim, std::false_type{}, std::true_type{});
  };
  switch (ndim) {
    case 1: outputs(std::integral_constant<int, 1>{}); break;
    case 2: outputs(std::integral_constant<int, 2>{}); break;
    case 3: outputs(std::integral_constant<int, 3>{}); break;
    case 4: outputs(std::integral_constant<int, 4>{}); break;
  }
}

template <class Site, class T, class Acc>
void stencil(const Site& site, const Lattice& lat, int64_t batch, const T* x, Acc* action, T* grad,
             int nthreads) {
  dispatch_variant(lat.ndim, action, grad, [&](auto dim, auto a, auto g) {
    stencil_run<decltype(dim)::value, decltype(a)::value, decltype(g)::value>(
        site, lat, batch, x, action, grad, nthreads);
  });
}

}  // namespace cpu
}  // namespace lftaccel
