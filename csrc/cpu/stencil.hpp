// CPU driver for nearest-neighbour stencils whose per-site functions take the
// field value and its forward/backward neighbours (phi^4, the oscillator path).
//
// A configuration is walked row by row along its contiguous last dimension:
// neighbours in the outer dimensions come from whole neighbour rows, and the
// wrap-around of the last dimension is peeled off both ends, so the middle of
// each row is a branch-free loop the compiler vectorises. Small planes (the last
// two dimensions) with short rows are walked whole instead (stencil_planes).
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

// Coordinates of the outer dimensions 0..N-1 of a row (N = D - 1) or of a plane (the
// last two dimensions, N = D - 2), advanced like an odometer so that neighbour rows or
// planes cost no integer division.
template <int N>
struct OuterWalker {
  int64_t coord[N > 0 ? N : 1] = {};

  OuterWalker(const Lattice& lat, int64_t index) {
    for (int mu = N - 1; mu >= 0; --mu) {
      coord[mu] = index % lat.extent[mu];
      index /= lat.extent[mu];
    }
  }
  int64_t forward(const Lattice& lat, int64_t base, int mu) const {
    return coord[mu] + 1 == lat.extent[mu] ? base - (lat.extent[mu] - 1) * lat.stride[mu]
                                           : base + lat.stride[mu];
  }
  int64_t backward(const Lattice& lat, int64_t base, int mu) const {
    return coord[mu] == 0 ? base + (lat.extent[mu] - 1) * lat.stride[mu] : base - lat.stride[mu];
  }
  // Start of the forward / backward neighbour row (or plane) along each outer dimension.
  template <class T>
  void neighbour_rows(const Lattice& lat, const T* x, int64_t base, const T** fr, const T** br) const {
    for (int mu = 0; mu < N; ++mu) {
      fr[mu] = x + forward(lat, base, mu);
      br[mu] = x + backward(lat, base, mu);
    }
  }
  void next(const Lattice& lat) {
    for (int mu = N - 1; mu >= 0; --mu) {
      if (++coord[mu] < lat.extent[mu]) return;
      coord[mu] = 0;
    }
  }
};

template <int D>
using RowWalker = OuterWalker<D - 1>;

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

// sum_{i0 <= i < i1} term(i) in blocks of kSumBlock: each block in Sum (float32 keeps its
// vector width), the blocks in double, so long ranges lose no float32 precision. term is
// inlined into the vectorised loop.
template <class Sum, class F>
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline double blocked_sum(int64_t i0, int64_t i1, F term) {
  double acc = 0;
  for (int64_t b0 = i0; b0 < i1; b0 += kSumBlock) {
    const int64_t b1 = std::min(i1, b0 + kSumBlock);
    Sum block = 0;
#pragma omp simd reduction(+ : block)
    for (int64_t i = b0; i < b1; ++i) block += Sum(term(i));
    acc += double(block);
  }
  return acc;
}

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
    acc += double(body(0, 1, L - 1)) + double(body(L - 1, 0, L - 2));
    acc += blocked_sum<Sum>(1, L - 1, [=](int64_t i) { return body(i, i + 1, i - 1); });
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

// Planes (the last two dimensions, D >= 2) of at most kMaxPlane sites whose rows are shorter
// than kLongRowBytes are walked whole rather than row by row: a short row (16 sites in 16^4)
// costs more to set up (its neighbour rows, its halo, the vector loop's entry and exit) than
// to compute, and a float32 row of 64 leaves a scalar remainder of 14 sites after three
// 16-lane vectors. Measured on 2 cores (AMD EPYC, AVX-512), sites per second of the fused
// phi^4 action + gradient against rows: float32 64 x 64^2 1.7x, 1024 x 32^2 1.8x, 16 x 16^4
// 2.0x; float64 1024 x 32^2 1.5x, 16 x 16^4 1.7x; a float64 row of 64 is as fast as its plane
// (an HMC trajectory at 64 x 64^2 was 8 % slower with planes), so it stays a row. The plane
// is copied once into a buffer with its last row before it and its first row after it, which
// makes the second-to-last dimension's neighbours c[i -/+ L] without wrap-around; the last
// dimension's wrap is a select on each site's column. The copy and the columns stay in L1/L2.
constexpr int64_t kMaxPlane = 4096;
constexpr int64_t kLongRowBytes = 512;

template <class T>
struct PlaneScratch {
  using Column = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;  // the select's lane width
  std::vector<T> buf;
  std::vector<Column> column;  // i % L
  int64_t L = 0, P = 0;

  // The buffer for an L-wide plane of P sites, returned at its first site (c[-L .. P + L - 1]).
  T* prepare(int64_t L_, int64_t P_) {
    if (L_ != L || P_ != P) {
      buf.resize(P_ + 2 * L_);
      column.resize(P_);
      for (int64_t i = 0; i < P_; ++i) column[i] = Column(i % L_);
      L = L_;  // only once the buffers fit them
      P = P_;
    }
    return buf.data() + L;
  }
};

template <class T>
PlaneScratch<T>& plane_scratch() {
  thread_local PlaneScratch<T> s;
  return s;
}

// Planes q0..q1-1 of configuration x: q indexes the outer dimensions 0..D-3.
template <int D, bool A, bool G, class Sum, class Site, class T>
double stencil_planes(const Site& site, const Lattice& lat, const T* x, T* grad, int64_t q0, int64_t q1) {
  static_assert(D >= 2, "planes need two dimensions");
  using Column = typename PlaneScratch<T>::Column;
  const int64_t L = lat.extent[D - 1], P = lat.extent[D - 2] * L;
  const Site site_ = site;  // a local copy: no store to grad can alias its parameters
  PlaneScratch<T>& scratch = plane_scratch<T>();
  T* const c = scratch.prepare(L, P);
  const Column* const column = scratch.column.data();
  const Column last = Column(L - 1);
  double acc = 0;
  OuterWalker<D - 2> walk(lat, q0);
  for (int64_t q = q0; q < q1; ++q, walk.next(lat)) {
    const int64_t base = q * P;
    const T* plane = x + base;
    std::copy(plane + P - L, plane + P, c - L);
    std::copy(plane, plane + P, c);
    std::copy(plane, plane + L, c + P);
    const T* fp[D];
    const T* bp[D];
    walk.neighbour_rows(lat, x, base, fp, bp);
    T* __restrict g = G ? grad + base : nullptr;  // never overlaps x (the bindings check)
    auto body = [=](int64_t i) -> T {
      T f[D], b[D];
      for (int mu = 0; mu < D - 2; ++mu) {
        f[mu] = fp[mu][i];
        b[mu] = bp[mu][i];
      }
      f[D - 2] = c[i + L];
      b[D - 2] = c[i - L];
      // Both candidates are loaded unconditionally (all lie in the buffer), so the select is
      // a blend. Written as a conditional load it became a masked load merging into the
      // register's previous value, a dependence across iterations that cost float64 planes
      // a third of their speed.
      const T f_in = c[i + 1], f_wrap = c[i + 1 - L], b_in = c[i - 1], b_wrap = c[i - 1 + L];
      f[D - 1] = column[i] == last ? f_wrap : f_in;
      b[D - 1] = column[i] == 0 ? b_wrap : b_in;
      if (A && G) return site_.template action_grad<D>(c[i], f, b, g[i]);
      if (G) g[i] = site_.template grad<D>(c[i], f, b);
      return A ? site_.template action<D>(c[i], f) : T(0);
    };
    acc += blocked_sum<Sum>(0, P, body);
  }
  return acc;
}

// Acc is the type of the per-configuration action (T for the public kernels,
// double for the samplers, whose dH must not be rounded to float32).
template <int D, bool A, bool G, class Site, class T, class Acc>
void stencil_run(const Site& site, const Lattice& lat, int64_t batch, const T* x, Acc* action, T* grad,
                 int nthreads) {
  // Work items are chunks of whole planes (or of rows: D = 1, large planes, long rows) of
  // about kChunkSites sites: fixed by the shape alone, so sums do not depend on the threads.
  const int64_t L = lat.extent[D - 1];
  bool planes = false;
  if constexpr (D >= 2)
    planes = lat.extent[D - 2] * L <= kMaxPlane && L * int64_t(sizeof(T)) < kLongRowBytes;
  const int64_t unit = planes ? lat.extent[D - 2] * L : L;
  const int64_t units = lat.volume / unit;
  const int64_t per_chunk = std::max<int64_t>(1, kChunkSites / unit);
  const int64_t n_chunks = (units + per_chunk - 1) / per_chunk;
  std::vector<double> partial(A ? batch * n_chunks : 0);
  parallel_items(batch * n_chunks, batch * lat.volume, nthreads, [&](int64_t it) {
    const int64_t b = it / n_chunks, c = it % n_chunks;
    const int64_t u0 = c * per_chunk, u1 = std::min(units, u0 + per_chunk);
    const T* xb = x + b * lat.volume;
    T* gb = G ? grad + b * lat.volume : nullptr;
    using Sum = std::conditional_t<std::is_same_v<Acc, double>, double, T>;
    double s = 0;
    if constexpr (D >= 2) {
      if (planes) s = stencil_planes<D, A, G, Sum>(site, lat, xb, gb, u0, u1);
      else s = stencil_rows<D, A, G, Sum>(site, lat, xb, gb, u0, u1);
    } else {
      s = stencil_rows<D, A, G, Sum>(site, lat, xb, gb, u0, u1);
    }
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
