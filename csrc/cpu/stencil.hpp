// CPU driver for nearest-neighbour stencils whose per-site functions take the
// field value and its forward/backward neighbours (phi^4, the oscillator path).
//
// A configuration is walked row by row along its contiguous last dimension:
// neighbours in the outer dimensions come from whole neighbour rows. Rows of a whole
// number of 64-byte vectors are walked a vector at a time, the site functions evaluated
// on SIMD vectors (stencil_vector_rows); the rest as follows. The interior
// rows of a plane (the last two dimensions) run as one branch-free loop the compiler
// vectorises, their end columns fixed after it; a plane's first and last row have the
// last dimension's wrap-around peeled off both ends. Small planes with short rows are
// walked whole instead (stencil_planes).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <type_traits>
#include <utility>
#include <vector>

#include "lftaccel/lattice.hpp"
#include "lftaccel/mcmc.hpp"
#include "parallel.hpp"
#include "simd.hpp"

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

// Sites summed in the field's precision before the sum moves to double.
constexpr int64_t kSumBlock = 1024;

// sum_{i0 <= i < i1} term(i) in blocks of kSumBlock: each block in Sum (float32 keeps its
// vector width), the blocks in double, so long ranges lose no float32 precision. term is
// inlined into the vectorised loop.
template <class Sum, class F>
LFT_FORCE_INLINE double blocked_sum(int64_t i0, int64_t i1, F term) {
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

// Where a stencil's gradient goes. Out(i, g, x) receives site i's gradient g and field
// value x; at(offset) is the same output for sites counted from offset.
//
// GradientOut stores the gradient.
template <class T>
struct GradientOut {
  static constexpr bool kInPlace = false;  // a wrong value is simply overwritten later
  T* g;
  GradientOut at(int64_t offset) const { return {g ? g + offset : nullptr}; }
  void operator()(int64_t i, T grad, T) const { g[i] = grad; }
  // The buffers it stores to and, besides the field, loads from (aliasing_stalls).
  const void* stored(int k) const { return k == 0 ? g : nullptr; }
  const void* loaded() const { return nullptr; }
#if LFT_HAVE_SIMD
  template <int W>
  LFT_FORCE_INLINE void operator()(int64_t i, Simd<T, W> grad, Simd<T, W>) const {
    grad.store(g + i);
  }
#endif
};

// KickDriftOut is a leapfrog step's kick p <- p - kick g and, with Drift, its drift
// xn <- x + eps p into another buffer, so the force never goes through memory (an HMC
// trajectory at 64 x 64^2 float64, 2 threads: 0.85 -> 0.75 ms in a C++ harness). p is
// updated in place, so a site updated with a wrong gradient is restored (saved / restore)
// before its right update.
template <class T, bool Drift>
struct KickDriftOut {
  static constexpr bool kInPlace = true;
  T* p;
  T* xn;
  T kick, eps;
  KickDriftOut at(int64_t offset) const { return {p + offset, Drift ? xn + offset : nullptr, kick, eps}; }
  const void* stored(int k) const { return k == 0 ? p : (Drift ? xn : nullptr); }
  const void* loaded() const { return p; }
  void operator()(int64_t i, T grad, T x) const {
    const T q = leapfrog_kick(p[i], grad, kick);
    p[i] = q;
    if (Drift) xn[i] = leapfrog_drift(x, q, eps);
  }
#if LFT_HAVE_SIMD
  template <int W>
  LFT_FORCE_INLINE void operator()(int64_t i, Simd<T, W> grad, Simd<T, W> x) const {
    using V = Simd<T, W>;
    const V q = leapfrog_kick(V::load(p + i), grad, V(kick));
    q.store(p + i);
    if (Drift) leapfrog_drift(x, q, V(eps)).store(xn + i);
  }
#endif
  T saved(int64_t i) const { return p[i]; }
  void restore(int64_t i, T v) const { p[i] = v; }
};

// Calls run with the KickDriftOut of a leapfrog step: with the drift into xn, or, where xn is
// null, the kick alone.
template <class T, class Run>
void with_kick_drift_out(T* p, T* xn, T kick, T eps, const Run& run) {
  if (xn) run(KickDriftOut<T, true>{p, xn, kick, eps});
  else run(KickDriftOut<T, false>{p, nullptr, kick, eps});
}

// Site i's action term (A), its gradient handed to out (G), from the field value phi and
// the forward and backward neighbours f, b.
template <int D, bool A, bool G, class Site, class T, class Out>
LFT_FORCE_INLINE T site_terms(const Site& site, T phi, const T* f, const T* b, const Out& out, int64_t i) {
  if (A && G) {
    T g;
    const T s = site.template action_grad<D>(phi, f, b, g);
    out(i, g, phi);
    return s;
  }
  if (G) out(i, site.template grad<D>(phi, f, b), phi);
  return A ? site.template action<D>(phi, f) : T(0);
}

// The sites of a row (or of consecutive rows) from row, with the outer neighbours at
// fr[mu] / br[mu] (mu < D - 1) at the same offsets: body(i, ip, im) hands site i's
// gradient to out and returns its action term, taking the last dimension's neighbours
// at ip and im.
template <int D, bool A, bool G, class Site, class T, class Out>
LFT_FORCE_INLINE auto row_sites(const Site& site, const T* row, const T* const* fr, const T* const* br, const Out& out) {
  const Site site_ = site;  // local copies, captured by value: no store through out can alias them
  const Out out_ = out;
  const T* f_rows[D];
  const T* b_rows[D];
  for (int mu = 0; mu < D - 1; ++mu) f_rows[mu] = fr[mu], b_rows[mu] = br[mu];
  return [=](int64_t i, int64_t ip, int64_t im) -> T {
    T f[D], b[D];
    for (int mu = 0; mu < D - 1; ++mu) {
      f[mu] = f_rows[mu][i];
      b[mu] = b_rows[mu][i];
    }
    f[D - 1] = row[ip];
    b[D - 1] = row[im];
    return site_terms<D, A, G>(site_, row[i], f, b, out_, i);
  };
}

// One row alone: the last dimension's wrap-around peeled off both ends. Sum is the type
// partial sums run in: T for the public kernels (float32 keeps its vector width, blocks move
// to double), double when the caller wants the action in double (the samplers' dH).
template <int D, bool A, bool G, class Sum, class Site, class T, class Out>
double stencil_peeled_row(const Site& site, const T* row, const T* const* fr, const T* const* br, const Out& out,
                          int64_t L) {
  const auto body = row_sites<D, A, G>(site, row, fr, br, out);
  if (L == 1) return double(body(0, 0, 0));
  double acc = double(body(0, 1, L - 1)) + double(body(L - 1, 0, L - 2));
  return acc + blocked_sum<Sum>(1, L - 1, [=](int64_t i) { return body(i, i + 1, i - 1); });
}

// The saved outputs of the interior rows' end columns (per thread).
template <class T>
std::vector<T>& end_column_scratch() {
  thread_local std::vector<T> s;
  return s;
}

// n consecutive interior rows of a plane (neither its first nor its last row) walked as one
// loop of n L sites. A row of 64 float64 leaves the peeled loop 62 sites: seven 8-lane
// vectors, six scalar sites and a horizontal sum per row; walked whole, the rows cost a
// vector loop and a fix-up of their two end columns: 1.4x faster than peeled rows at
// 64 x 64^2 float64 (one thread; measured before the vector rows, which now take rows of whole
// vectors: this path serves the other lengths, and XY's direct stencil). The outer neighbours
// lie at one offset for all the rows, and i +/- 1 leave a row only into its neighbour rows,
// which lie in the plane because the rows are interior: so every read is in bounds and in the
// same configuration. Those reads are the
// wrong neighbours of columns 0 and L - 1; the fix-up redoes both columns' gradients (after
// restoring an output updated in place) and replaces column L - 1's action term w, summed with
// the next row's first site, by the right one. Taking w back out costs the sum a rounding
// error of order eps |w|, no more than the sum's own while the w are no larger than the terms
// that stay: where the |w| add up to more than 4 times the right terms that replace them
// plus |the sum| (a huge or non-finite site next to a row's end), the action is summed again
// row by row, so it is the peeled rows' answer. An action density near zero does not send
// sums down that path (none of 16 thermalised 64^2 phi^4 configurations at lambda 0.022,
// kappa 0.295 and 0.3, action / V 0.01 and -0.08, would take it).
// (Leaving w out of the loop with a select on the column instead cost 15-40 % of the fused
// action + gradient's speed.)
template <int D, bool A, bool G, class Sum, class Site, class T, class Out>
double stencil_interior_rows(const Site& site, const T* row, const T* const* fr, const T* const* br,
                             const Out& out, int64_t L, int64_t n) {
  static_assert(D >= 2, "interior rows need a plane");
  const auto body = row_sites<D, A, G>(site, row, fr, br, out);
  const auto gradient = row_sites<D, false, G>(site, row, fr, br, out);
  const auto term = row_sites<D, A, false>(site, row, fr, br, out);
  constexpr bool restore = G && Out::kInPlace;
  T* saved = nullptr;
  if constexpr (restore) {
    std::vector<T>& scratch = end_column_scratch<T>();
    scratch.resize(2 * n);
    saved = scratch.data();
    for (int64_t k = 0; k < n; ++k) {
      saved[2 * k] = out.saved(k * L);
      saved[2 * k + 1] = out.saved(k * L + L - 1);
    }
  }
  double acc = blocked_sum<Sum>(0, n * L, [=](int64_t i) { return body(i, i + 1, i - 1); });
  double taken_out = 0, put_in = 0;  // sums of |w| and of |the right terms|
  for (int64_t k = 0; k < n; ++k) {
    const int64_t first = k * L, last = first + L - 1;
    if constexpr (restore) {
      out.restore(first, saved[2 * k]);
      out.restore(last, saved[2 * k + 1]);
    }
    if (G) gradient(first, first + 1, last);  // column 0: only its gradient was wrong
    if (A) {
      const double w = double(term(last, last + 1, last - 1));
      acc -= w;
      taken_out += std::fabs(w);
    }
    const double right = double(body(last, first, last - 1));
    acc += right;
    put_in += std::fabs(right);
  }
  if (A && !(std::isfinite(acc) && taken_out <= 4 * put_in + std::fabs(acc))) {
    acc = 0;
    for (int64_t k = 0; k < n; ++k) {
      const T* f[D];
      const T* b[D];
      for (int mu = 0; mu < D - 1; ++mu) {
        f[mu] = fr[mu] + k * L;
        b[mu] = br[mu] + k * L;
      }
      acc += stencil_peeled_row<D, A, false, Sum>(site, row + k * L, f, b, out, L);
    }
  }
  return acc;
}

template <int D, bool A, bool G, class Sum, class Site, class T, class Out>
double stencil_rows(const Site& site, const Lattice& lat, const T* x, const Out& out, int64_t r0, int64_t r1) {
  const int64_t L = lat.extent[D - 1];
  double acc = 0;
  RowWalker<D> walk(lat, r0);
  for (int64_t r = r0; r < r1;) {
    const int64_t base = r * L;
    const T* fr[D];
    const T* br[D];
    walk.neighbour_rows(lat, x, base, fr, br);
    const Out o = out.at(base);
    int64_t interior = 0;  // rows from r on that are interior rows of their plane
    if constexpr (D >= 2) {
      const int64_t y = walk.coord[D - 2], n = lat.extent[D - 2];
      if (y > 0 && y < n - 1 && L > 1) interior = std::min(r1 - r, n - 1 - y);
    }
    if (interior > 0) {
      if constexpr (D >= 2) acc += stencil_interior_rows<D, A, G, Sum>(site, x + base, fr, br, o, L, interior);
      r += interior;
      for (int64_t k = 0; k < interior; ++k) walk.next(lat);
    } else {
      acc += stencil_peeled_row<D, A, G, Sum>(site, x + base, fr, br, o, L);
      ++r;
      walk.next(lat);
    }
  }
  return acc;
}

#if LFT_HAVE_SIMD
// The action terms' partial sums: a vector of per-lane sums in Sum, moved to double (lanes in
// order) every kSumBlock sites and at the end of a work chunk, so the order of every sum is
// fixed by the shape alone.
template <class Sum, int W>
struct LaneSums {
  Simd<Sum, W> block = Sum(0);
  int64_t vectors = 0;
  double total = 0;

  template <class V>
  LFT_FORCE_INLINE void add(V term) {
    block += term.template convert<Sum>();
    if (++vectors == kSumBlock / W) flush();
  }
  // Inlined: a call out of line takes the sums' address, and the compiler then reloads them
  // from memory after every store of a gradient, which might alias them (the fused phi^4 action
  // + gradient at 64 x 64^2 float64 ran 2.2x slower so).
  LFT_FORCE_INLINE void flush() {
    total += lane_sum(block);
    block = Sum(0);
    vectors = 0;
  }
};

// The two sums of a site's action in parts (Site::action_parts_grad), each a LaneSums.
template <class Sum, int W>
struct SplitSums {
  LaneSums<Sum, W> u, v;

  template <class V>
  LFT_FORCE_INLINE void add(V u_term, V v_term) {
    u.add(u_term);
    v.add(v_term);
  }
  LFT_FORCE_INLINE void flush() {
    u.flush();
    v.flush();
  }
};

// Whether the vector rows sum the action in parts: where both outputs are wanted and the
// site offers the split (phi^4, where it saves 15 % of the time; see phi4.hpp).
template <class Site, class = void>
constexpr bool kHasActionParts = false;
template <class Site>
constexpr bool kHasActionParts<Site, std::void_t<decltype(&Site::action_from_parts)>> = true;
template <bool A, bool G, class Site>
constexpr bool kSplitAction = A && G && kHasActionParts<Site>;

// Where vector rows hand a vector's output to: straight to out (Delay 0), or held back Delay
// vectors (see kStoreDelay) in registers, oldest first, and handed on in order, across the rows of
// a work item; flush() hands on what is held at its end. The values handed on are the same
// either way, and so is what an Out computes from them, as long as it computes all of it inside
// its own call: the compiler fuses a multiply and an add into one rounding only within a basic
// block, and the held store's branch would part a multiply in the site function from an add in
// the Out (GradientOut only stores; KickDriftOut's multiplies and adds are all its own).
template <class V, int Delay, class Out>
struct HeldStores {
  static constexpr int kHeld = Delay > 0 ? Delay : 1;
  static constexpr int64_t kBack = int64_t(Delay) * V::kWidth;  // sites between a vector and the one handed on
  const Out& out;
  int64_t first;  // the work item's first site: its vectors come in order from there
  V g[kHeld]{}, x[kHeld]{};  // (zeros: the first puts shift slots not yet set)

  // The output of the vector at site i of out's configuration.
  LFT_FORCE_INLINE void put(int64_t i, V grad, V phi) {
    if constexpr (Delay == 0) {
      out(i, grad, phi);
    } else {
      if (i >= first + kBack) out(i - kBack, g[0], x[0]);
      for (int k = 0; k + 1 < Delay; ++k) g[k] = g[k + 1], x[k] = x[k + 1];
      g[Delay - 1] = grad;
      x[Delay - 1] = phi;
    }
  }
  // After the vector at site end - W, the last put.
  LFT_FORCE_INLINE void flush(int64_t end) {
    for (int k = 0; k < Delay; ++k) {  // (constant indices: the held vectors stay in registers)
      const int64_t i = end - kBack + int64_t(k) * V::kWidth;
      if (i >= first) out(i, g[k], x[k]);
    }
  }
};

// Takes a site function's output (site_terms hands it to an Out) for HeldStores.
template <class V>
struct Catch {
  V* g;
  V* x;
  template <class I>
  LFT_FORCE_INLINE void operator()(I, V grad, V phi) const {
    *g = grad;
    *x = phi;
  }
};

// Rows whose length is a whole number of SIMD vectors (L = n W sites, W = 64 bytes / sizeof(T)),
// walked a vector at a time with the site functions themselves evaluated on vectors
// (Site::rebind). Every load is of a whole vector at a multiple of W from the row's start (the
// outer neighbours' rows lie at the same offsets); the last dimension's neighbours are a lane
// shift of the centre vector and its neighbour vector, and the row's wrap-around is the same
// shift with the row's last (or first) vector, so no site needs a fix-up or a select. Against
// the compiler-vectorised loops (five loads per vector, two of them at odd offsets, which split
// cache lines; the end columns' fix-up; planes copied and selected) on one core (AMD EPYC,
// AVX-512; loads aligned where x is 64-byte aligned, as torch's allocations are):
// the fused phi^4 kick-drift at 64 x 64^2 float64 0.59 -> 0.30-0.36 ns per site, the action +
// gradient float64 64 x 64^2 0.46 -> 0.30, 8^2 planes 1.09 -> 0.80, float32 1024 x 32^2 0.37 ->
// 0.20, 16 x 16^4 0.52 -> 0.44 ns per site (rows of one vector: no plane copy).
template <int D, bool A, bool G, class Site, class T, class Held, class Sums>
LFT_FORCE_INLINE void stencil_vector_row(const Site& lanes, const T* row, const T* const* fr, const T* const* br,
                                         Held& held, int64_t at, int64_t L, Sums& sums) {
  using V = Simd<T>;
  constexpr int W = V::kWidth;
  const int64_t nv = L / W;
  V prev = V::load(row + L - W), cur = V::load(row);
  for (int64_t j = 0; j < nv; ++j) {
    const int64_t i = j * W;
    const V next = V::load(row + (j + 1 < nv ? i + W : 0));
    V f[D], b[D];
    for (int mu = 0; mu < D - 1; ++mu) {
      f[mu] = V::load(fr[mu] + i);
      b[mu] = V::load(br[mu] + i);
    }
    f[D - 1] = successors(cur, next);
    b[D - 1] = predecessors(prev, cur);
    if constexpr (kSplitAction<A, G, Site>) {
      V g, u, v;
      lanes.template action_parts_grad<D>(cur, f, b, g, u, v);
      sums.add(u, v);  // (before the put: a branch between would keep the sums' multiply-adds apart)
      held.put(at + i, g, cur);
    } else {
      V g, phi;
      const V term = site_terms<D, A, G>(lanes, cur, f, b, Catch<V>{&g, &phi}, i);
      if (A) sums.add(term);
      if constexpr (G) held.put(at + i, g, phi);
    }
    prev = cur;
    cur = next;
  }
}

template <int D, bool A, bool G, class Sum, int Delay = 0, class Site, class T, class Out>
double stencil_vector_rows(const Site& site, const Lattice& lat, const T* x, const Out& out, int64_t r0,
                           int64_t r1) {
  using V = Simd<T>;
  const int64_t L = lat.extent[D - 1];
  const auto lanes = site.template rebind<V>();  // a local copy: no store through out can alias it
  const Out out_ = out;
  using Sums = std::conditional_t<kSplitAction<A, G, decltype(lanes)>, SplitSums<Sum, V::kWidth>,
                                  LaneSums<Sum, V::kWidth>>;
  Sums sums;
  HeldStores<V, G ? Delay : 0, Out> held{out_, r0 * L};
  RowWalker<D> walk(lat, r0);
  if constexpr (D >= 3) {
    // The rows of a plane (the last two dimensions) one after another: the neighbour rows along
    // the outer dimensions mu < D - 2 advance by L a row, and only the second-to-last
    // dimension's wrap is decided per row, where the walker set up all 2 (D - 1) pointers, each
    // with a branch, for every row. The fused phi^4 action + gradient, float64, one core, the
    // two walks alternating in one process (ns per site): 16 x 16^4 0.71 -> 0.60, 1 x 16^4
    // (in L2) 0.65 -> 0.49, 2 x 8^4 1.13 -> 0.71, 4 x 32^3 0.39 -> 0.33; the gradient alone
    // 1.13-1.25x. Rows of a 2D lattice have no outer plane to share, and keep the walker.
    const int64_t n = lat.extent[D - 2];
    for (int64_t r = r0; r < r1;) {
      const int64_t y0 = walk.coord[D - 2], rows = std::min(r1 - r, n - y0);
      const int64_t base = r * L;
      const T* fr[D];
      const T* br[D];
      walk.neighbour_rows(lat, x, base, fr, br);
      const T* plane = x + (base - y0 * L);
      for (int64_t k = 0; k < rows; ++k) {
        const int64_t y = y0 + k, at = base + k * L;
        fr[D - 2] = plane + (y + 1 == n ? 0 : (y + 1) * L);
        br[D - 2] = plane + (y == 0 ? n - 1 : y - 1) * L;
        stencil_vector_row<D, A, G>(lanes, x + at, fr, br, held, at, L, sums);
        for (int mu = 0; mu < D - 2; ++mu) {
          fr[mu] += L;
          br[mu] += L;
        }
      }
      r += rows;
      walk.coord[D - 2] = y0 + rows - 1;
      walk.next(lat);
    }
  } else {
    for (int64_t r = r0; r < r1; ++r, walk.next(lat)) {
      const int64_t base = r * L;
      const T* fr[D];
      const T* br[D];
      walk.neighbour_rows(lat, x, base, fr, br);
      stencil_vector_row<D, A, G>(lanes, x + base, fr, br, held, base, L, sums);
    }
  }
  if constexpr (G) held.flush(r1 * L);
  if (!A) return 0.0;
  if constexpr (kSplitAction<A, G, decltype(lanes)>) {
    sums.flush();
    const double s = site.action_from_parts(sums.u.total, sums.v.total);
    if (std::isfinite(s)) return s;
    // A part overflowed (or the field is not finite): the density's sum, the gradient kept.
    return stencil_vector_rows<D, true, false, Sum>(site, lat, x, out, r0, r1);
  } else {
    sums.flush();
    return sums.total;
  }
}
#endif

// Whether a Site's functions run on vectors: it says how to broadcast its parameters.
template <class Site, class V, class = void>
constexpr bool kHasRebind = false;
template <class Site, class V>
constexpr bool kHasRebind<Site, V, std::void_t<decltype(std::declval<const Site&>().template rebind<V>())>> = true;

// Whether rows of L sites of T take stencil_vector_rows.
template <class Site, class T>
constexpr bool vector_rows(int64_t L) {
#if LFT_HAVE_SIMD
  return kHasRebind<Site, Simd<T>> && L % Simd<T>::kWidth == 0;
#else
  (void)L;
  return false;
#endif
}

// Planes (the last two dimensions, D >= 2) of at most kMaxPlane sites whose rows are shorter
// than kPlaneRowBytes are walked whole rather than row by row: a short row (16 sites in 16^4)
// leaves the interior-row loop two end columns to fix in every 16 sites, and the peeled row a
// vector loop of 14. Measured on one core (AMD EPYC, AVX-512), sites per second of the fused
// phi^4 action + gradient, planes against rows: float64 16 x 16^4 1.7x, float32 16 x 16^4
// 2.6x, 1024 x 32^2 1.25x. Rows of 256 bytes and more are as fast as planes or faster (float64
// 1024 x 32^2 1.17x faster as rows, float32 64 x 64^2 the same). The plane is copied once into
// a buffer with its last row before it and its first row after it, which makes the
// second-to-last dimension's neighbours c[i -/+ L] without wrap-around; the last dimension's
// wrap is a select on each site's column. The copy and the columns stay in L1/L2.
// An output updated in place (the leapfrog's kick) costs the interior rows a save and a
// restore of their end columns: rows under 512 bytes then take planes too (HMC trajectory,
// 64 x 32^2 float64: 0.222 ms with interior rows, 0.203 ms with planes; at 64 x 64^2 planes
// would be 1.3x slower). These figures predate the vector rows, which now take all the shapes
// named here for phi^4 and the oscillator; planes and interior rows serve rows that are not a
// whole number of vectors (float32 16 x 8^4, odd extents) and XY's direct stencil.
constexpr int64_t kMaxPlane = 4096;
constexpr int64_t kPlaneRowBytes = 256;
constexpr int64_t kPlaneRowBytesInPlace = 512;

// Integers as wide as T's lanes, for selects on a site's coordinate that vectorise.
template <class T>
using LaneIndex = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

template <class T>
struct PlaneScratch {
  using Column = LaneIndex<T>;
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
template <int D, bool A, bool G, class Sum, class Site, class T, class Out>
double stencil_planes(const Site& site, const Lattice& lat, const T* x, const Out& out, int64_t q0,
                      int64_t q1) {
  static_assert(D >= 2, "planes need two dimensions");
  using Column = typename PlaneScratch<T>::Column;
  const int64_t L = lat.extent[D - 1], P = lat.extent[D - 2] * L;
  const Site site_ = site;  // a local copy: no store through out can alias its parameters
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
    const Out o = out.at(base);  // never overlaps x (the bindings check)
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
      return site_terms<D, A, G>(site_, c[i], f, b, o, i);
    };
    acc += blocked_sum<Sum>(0, P, body);
  }
  return acc;
}

// 4K aliasing. A core that sees a load follow a store still in flight, with the same address in
// the low 12 bits, holds the load until it knows the full addresses (x86 cores compare those
// bits first). A vector row stores each vector's output right after computing it, and loads the
// next vector and the neighbour rows' vectors one iteration later, so where an output lies a
// few vectors past the field modulo 4096 bytes, or a few vectors past a neighbour row's distance,
// nearly every load is held. Consecutive allocations from the heap land there: a field and then
// its gradient, allocated one after the other, lay 128 bytes apart modulo 4096. On one core (AMD
// Zen 4) that cost the fused phi^4 action + gradient at 64 x 64^2 float64 21-24 % of its speed,
// 25-30 % at the neighbour rows' distance + 64, 13 % and 8 % one and two vectors further, < 5 %
// beyond. Holding each vector's output back kStoreDelay iterations (HeldStores) moves those
// distances by as many vectors; each call holds its stores back where aliasing_stalls expects
// that to stall its loads less, from the buffers' addresses. What is stored is the same either
// way. Over the 64 placements of the gradient (every 64 bytes modulo 4096;
// benchmarks/bench_placement.py) the slowest call went from 1.29-1.36 to 1.11 times the fastest
// at 64 x 64^2, the mean from 1.03 to 1.02. At 1024 x 32^2, whose 16 MB stream from L3, the gain
// is unclear (slowest 1.25-1.27 before, 1.17-1.49 after; mean 1.04-1.07 before and after). The
// benchmark's placement (128) at 64 x 64^2 ran 0.047-0.050 ms on 2 threads before, 0.037-0.039 after. Holding back 4 vectors spilled
// them and ran 2x slower; at 2 they stay in registers (the sums' multiply-adds must not be split
// from their multiplies by the held store's branch: HeldStores::put comes after sums.add).
constexpr int kStoreDelay = 2;

// The expected stall of the loads behind a store, in a rough unit (a held load one iteration
// behind its store: 1), of vector rows holding their stores back by delay vectors: for every
// store stream and every load stream, the loads of the k-th iteration after the store that
// overlap it modulo 4096 bytes, weighed by k as measured. The field's loads run delay vectors
// ahead of the stores; the output's own loads (a kick's momenta) are made with its stores.
template <int D, class T, class Out>
double aliasing_stalls(const Lattice& lat, const T* x, const Out& out, int delay) {
  constexpr int64_t kVector = kSimdBytes, kPage = 4096;
  constexpr double kWeight[] = {1.0, 0.5, 0.3, 0.2, 0.15, 0.15};  // k = 1, 2, ...
  // The field's loads of an iteration relative to its vector: the row's next vector and the
  // outer neighbours' vectors.
  int64_t field_loads[2 * D] = {kVector};
  int n_field = 1;
  for (int mu = 0; mu < D - 1; ++mu) {
    field_loads[n_field++] = lat.stride[mu] * int64_t(sizeof(T));
    field_loads[n_field++] = -lat.stride[mu] * int64_t(sizeof(T));
  }
  constexpr int kMaxK = int(sizeof(kWeight) / sizeof(double));
  double stalls = 0;
  auto add = [&](const void* store, const void* load, int64_t ahead) {
    // The k-th iteration's load at load + ahead + k vectors overlaps the store at store + 0,
    // modulo 4096, where k vectors lie within a vector of r: at most two k.
    const int64_t r = int64_t((uint64_t(reinterpret_cast<uintptr_t>(store)) -
                               uint64_t(reinterpret_cast<uintptr_t>(load)) - uint64_t(ahead)) % uint64_t(kPage));
    for (int64_t k = r / kVector; k <= (r + kVector - 1) / kVector && k <= kMaxK; ++k)
      if (k >= 1 && std::abs(k * kVector - r) < kVector) stalls += kWeight[k - 1];
  };
  for (int s = 0; s < 2; ++s) {
    const void* store = out.stored(s);
    if (!store) continue;
    for (int l = 0; l < n_field; ++l) add(store, x, field_loads[l] + delay * kVector);
    if (out.loaded()) add(store, out.loaded(), 0);
  }
  return stalls;
}

// Whether a call's vector rows hold their stores back (see kStoreDelay).
template <int D, class T, class Out>
bool hold_stores(const Lattice& lat, const T* x, const Out& out) {
  return aliasing_stalls<D>(lat, x, out, kStoreDelay) < aliasing_stalls<D>(lat, x, out, 0);
}

// Acc is the type of the per-configuration action (T for the public kernels,
// double for the samplers, whose dH must not be rounded to float32).
template <int D, bool A, bool G, class Site, class T, class Acc, class Out>
void stencil_run(const Site& site, const Lattice& lat, int64_t batch, const T* x, Acc* action, const Out& out,
                 int nthreads) {
  // Work items are chunks of whole planes (or of rows: vector rows, D = 1, large planes, long
  // rows) of about kChunkSites sites: fixed by the shape alone, so sums do not depend on the
  // threads. (The vector rows round differently from the scalar loops, at the last bits: a
  // result depends on the shape and the instruction set, never on the thread count.)
  const int64_t L = lat.extent[D - 1];
  const bool vectors = vector_rows<Site, T>(L);
  [[maybe_unused]] const bool hold = G && vectors && hold_stores<D>(lat, x, out);  // (used with SIMD)
  bool planes = false;
  if constexpr (D >= 2)
    planes = !vectors && lat.extent[D - 2] * L <= kMaxPlane &&
             L * int64_t(sizeof(T)) < (Out::kInPlace ? kPlaneRowBytesInPlace : kPlaneRowBytes);
  int64_t unit = L;
  if constexpr (D >= 2)
    if (planes) unit = lat.extent[D - 2] * L;
  const int64_t units = lat.volume / unit;
  const int64_t per_chunk = std::max<int64_t>(1, kChunkSites / unit);
  const int64_t n_chunks = (units + per_chunk - 1) / per_chunk;
  std::vector<double> partial(A ? batch * n_chunks : 0);
  parallel_items(batch * n_chunks, batch * lat.volume, nthreads, [&](int64_t it) {
    const int64_t b = it / n_chunks, c = it % n_chunks;
    const int64_t u0 = c * per_chunk, u1 = std::min(units, u0 + per_chunk);
    const T* xb = x + b * lat.volume;
    const Out ob = out.at(b * lat.volume);
    using Sum = std::conditional_t<std::is_same_v<Acc, double>, double, T>;
    double s = 0;
    if constexpr (D >= 2) {
      if (planes) s = stencil_planes<D, A, G, Sum>(site, lat, xb, ob, u0, u1);
    }
#if LFT_HAVE_SIMD
    if constexpr (kHasRebind<Site, Simd<T>>) {
      if (vectors)
        s = G && hold ? stencil_vector_rows<D, A, G, Sum, G ? kStoreDelay : 0>(site, lat, xb, ob, u0, u1)
                      : stencil_vector_rows<D, A, G, Sum>(site, lat, xb, ob, u0, u1);
    }
#endif
    if (!planes && !vectors) s = stencil_rows<D, A, G, Sum>(site, lat, xb, ob, u0, u1);
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
        site, lat, batch, x, action, GradientOut<T>{grad}, nthreads);
  });
}

// A leapfrog step on a batch from its force: p <- p - kick dS/dx(x) and, where xn is not
// null, xn <- x + eps p (xn must not overlap x or p); with action not null, also S(x).
template <class Site, class T>
void stencil_kick_drift(const Site& site, const Lattice& lat, int64_t batch, const T* x, double* action, T* p,
                        T* xn, T kick, T eps, int nthreads) {
  auto run = [&](auto out) {
    dispatch_variant(lat.ndim, action, true, [&](auto dim, auto a, auto g) {
      stencil_run<decltype(dim)::value, decltype(a)::value, decltype(g)::value>(site, lat, batch, x, action, out,
                                                                                nthreads);
    });
  };
  with_kick_drift_out(p, xn, kick, eps, run);
}

}  // namespace cpu
}  // namespace lftaccel
