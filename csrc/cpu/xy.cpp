// XY model on the CPU. Angles enter the per-site functions as (cos, sin)
// pairs, computed once per site into a per-thread slab buffer (a few slices
// of the outermost dimension plus one halo slice either side, sized to stay in
// L2), so each site costs one cos and one sin rather than one per link.
#include <algorithm>
#include <cmath>
#include <new>
#include <type_traits>
#include <vector>

#include "lftaccel/cpu.hpp"
#include "parallel.hpp"
#include "vecmath.hpp"
#include "stencil.hpp"
#include "energy.hpp"

namespace lftaccel {
namespace cpu {
namespace {

constexpr int64_t kSlabSites = 16384;
// Slices larger than this (a huge lattice with a short outermost extent) take the
// direct stencil, which evaluates sin/cos per link but needs no scratch at all.
constexpr int64_t kMaxSliceSites = int64_t(1) << 18;

// cos and sin of n angles, vectorised; the rare block holding a huge or
// non-finite angle takes the libm path, which handles those exactly.
template <class T>
void fill_cos_sin(const T* theta, int64_t n, T* c, T* s) {
  if constexpr (std::is_same_v<T, float>) {  // float angles within the float reduction's range
    int small = 1;
#pragma omp simd reduction(& : small)
    for (int64_t i = 0; i < n; ++i) small &= std::fabs(theta[i]) < kSincosMaxArgFloat;
    if (small) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) sincos_reduced_float(theta[i], s[i], c[i]);
      return;
    }
  }
  int tame = 1;
#pragma omp simd reduction(& : tame)
  for (int64_t i = 0; i < n; ++i) tame &= std::fabs(double(theta[i])) < kSincosMaxArg;
  if (!tame) {
    for (int64_t i = 0; i < n; ++i) {
      c[i] = std::cos(theta[i]);
      s[i] = std::sin(theta[i]);
    }
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    double si, co;
    sincos_reduced(double(theta[i]), si, co);
    c[i] = T(co);
    s[i] = T(si);
  }
}

// The outer neighbour rows (dimensions 0..D-2) of the row at `base` of a slice whose cos/sin
// sit at C, S: dimension 0 from the neighbouring slices at -/+ V0, the others inside the slice.
template <int D, class T>
struct SliceRows {
  const T *fc[D], *fs[D], *bc[D], *bs[D];

  SliceRows(const Lattice& lat, const T* C, const T* S, int64_t V0, int64_t base) {
    fc[0] = C + V0 + base, fs[0] = S + V0 + base;
    bc[0] = C - V0 + base, bs[0] = S - V0 + base;
    for (int mu = 1; mu < D - 1; ++mu) {  // stays inside the slice for mu >= 1
      const int64_t f = lat.forward(base, mu), b = lat.backward(base, mu);
      fc[mu] = C + f, fs[mu] = S + f, bc[mu] = C + b, bs[mu] = S + b;
    }
  }
};

// The rows of a slice whose cos/sin sit at C, S (as xy_slice) when each row is a whole
// number of SIMD vectors: a vector at a time, the last dimension's neighbours a lane shift,
// the XYSite functions evaluated on vectors, as the phi^4 vector rows (stencil.hpp); the
// action's lane sums run over the caller's whole work item. Action + gradient on one core (AMD
// EPYC, AVX-512), sincos included, against the row and flat walks: float64 64 x 64^2 2.6-3.0 ->
// 1.9 ns per site, 16 x 16^4 5.5-5.9 -> 3.6-3.8, float32 4 x 256^2 1.26 -> 0.99, 16 x 16^4 2.2-2.5
// -> 1.8; short float32 rows about even (64 x 16^2 1.7, 1024 x 32^2 1.4 -> 1.2).
#if LFT_HAVE_SIMD
template <int D, bool A, bool G, class T, class Out, class Sums>
void xy_slice_vectors(const XYSite<T>& site, const Lattice& lat, const T* C, const T* S, const T* X, int64_t V0,
                      const Out& out, Sums& sums) {
  using V = Simd<T>;
  constexpr int W = V::kWidth;
  const auto lanes = site.template rebind<V>();
  const int64_t L = lat.extent[D - 1], nv = L / W;
  for (int64_t base = 0; base < V0; base += L) {
    const SliceRows<D, T> nb(lat, C, S, V0, base);
    const T *c = C + base, *s = S + base;
    V c_prev = V::load(c + L - W), c_cur = V::load(c), s_prev = V::load(s + L - W), s_cur = V::load(s);
    for (int64_t j = 0; j < nv; ++j) {
      const int64_t i = j * W, in = j + 1 < nv ? i + W : 0;
      const V c_next = V::load(c + in), s_next = V::load(s + in);
      V fc[D], fs[D], bc[D], bs[D];
      for (int mu = 0; mu < D - 1; ++mu) {
        fc[mu] = V::load(nb.fc[mu] + i), fs[mu] = V::load(nb.fs[mu] + i);
        bc[mu] = V::load(nb.bc[mu] + i), bs[mu] = V::load(nb.bs[mu] + i);
      }
      fc[D - 1] = successors(c_cur, c_next), fs[D - 1] = successors(s_cur, s_next);
      bc[D - 1] = predecessors(c_prev, c_cur), bs[D - 1] = predecessors(s_prev, s_cur);
      if (G) out(base + i, lanes.template grad<D>(c_cur, s_cur, fc, fs, bc, bs), V::load(X + base + i));
      if (A) sums.add(lanes.template action<D>(c_cur, s_cur, fc, fs));
      c_prev = c_cur, c_cur = c_next, s_prev = s_cur, s_cur = s_next;
    }
  }
}
#endif

// Whether slices of rows of L sites take xy_slice_vectors.
template <int D, class T>
constexpr bool xy_vector_rows(int64_t L) {
#if LFT_HAVE_SIMD
  return D > 1 && L % Simd<T>::kWidth == 0;
#else
  (void)L;
  return false;
#endif
}

// One slice (all sites at one coordinate of dimension 0) whose cos/sin sit at
// C, S in the slab buffer, with the neighbouring slices at C -/+ V0.
template <int D, bool A, bool G, class T, class Out>
double xy_slice(const XYSite<T>& site, const Lattice& lat, const T* C, const T* S, const T* X, int64_t V0,
                const Out& out) {
  double acc = 0;
  if (D == 1) {  // the slice is one site; its neighbours are the halo entries
    T fc[1] = {C[1]}, fs[1] = {S[1]}, bc[1] = {C[-1]}, bs[1] = {S[-1]};
    if (G) out(0, site.template grad<1>(C[0], S[0], fc, fs, bc, bs), X[0]);
    if (A) acc += site.template action<1>(C[0], S[0], fc, fs);
    return acc;
  }
  const int64_t L = lat.extent[D - 1];
  for (int64_t base = 0; base < V0; base += L) {
    const SliceRows<D, T> nb(lat, C, S, V0, base);
    const T *c = C + base, *s = S + base;
    const T* x = X + base;
    const Out o = out.at(base);
    auto body = [&](int64_t i, int64_t ip, int64_t im) LFT_INLINE_LAMBDA -> T {  // (see config.hpp)
      T fc[D], fs[D], bc[D], bs[D];
      for (int mu = 0; mu < D - 1; ++mu) {
        fc[mu] = nb.fc[mu][i], fs[mu] = nb.fs[mu][i], bc[mu] = nb.bc[mu][i], bs[mu] = nb.bs[mu][i];
      }
      fc[D - 1] = c[ip], fs[D - 1] = s[ip], bc[D - 1] = c[im], bs[D - 1] = s[im];
      if (G) o(i, site.template grad<D>(c[i], s[i], fc, fs, bc, bs), x[i]);
      return A ? site.template action<D>(c[i], s[i], fc, fs) : T(0);
    };
    if (L == 1) {
      acc += body(0, 0, 0);
      continue;
    }
    double racc = body(0, 1, L - 1);
#pragma omp simd reduction(+ : racc)
    for (int64_t i = 1; i < L - 1; ++i) racc += body(i, i + 1, i - 1);
    acc += racc + body(L - 1, 0, L - 2);
  }
  return acc;
}

// Slabs whose rows are whole SIMD vectors take xy_slice_vectors. Other slabs whose rows are
// shorter than kFlatRowBytes are walked flat, as one loop
// over all their sites (xy_slab), and the rest slice by slice and row by row (xy_slice): a
// short row costs more to set up than to compute, as for the phi^4 planes (stencil.hpp),
// while a long row's peeled loop needs no wrap selects. Measured on 2 cores (AMD EPYC,
// AVX-512), one thread, sites per second of the fused action + gradient, flat against rows
// (both with the double sincos), before the vector slices, which now take all these shapes:
// float32 1024 x 32^2 1.75x, 64 x 64^2 1.35x, 16 x 16^4 2.2x; float64 1024 x 32^2 1.1x,
// 16 x 16^4 1.03x. The flat walk now serves short rows that are not whole vectors (float32
// rows of 8, 24, 40 sites; odd lengths).
constexpr int64_t kFlatRowBytes = 512;

template <class T>
using Coord = LaneIndex<T>;  // stencil.hpp

// The coordinate along each in-slice dimension mu = 1..D-1 of the first n_sites sites of a
// slab (periodic in the slice volume), mu's at offset (mu - 1) n_sites; cached per thread.
template <int D, class T>
const Coord<T>* slab_coords(const Lattice& lat, int64_t n_sites) {
  thread_local std::vector<Coord<T>> coords;
  thread_local int64_t key[kMaxDims + 1] = {};
  bool same = key[0] == n_sites;
  for (int mu = 1; mu <= kMaxDims; ++mu) same = same && key[mu] == (mu < D ? lat.extent[mu] : 0);
  if (!same) {
    coords.assign((D > 1 ? D - 1 : 1) * n_sites, 0);
    for (int mu = 1; mu < D; ++mu)
      for (int64_t i = 0; i < n_sites; ++i)
        coords[(mu - 1) * n_sites + i] = Coord<T>((i / lat.stride[mu]) % lat.extent[mu]);
    key[0] = n_sites;
    for (int mu = 1; mu <= kMaxDims; ++mu) key[mu] = mu < D ? lat.extent[mu] : 0;
  }
  return coords.data();
}

// The n sites of a slab whose cos/sin start at C, S (the halo slices at C - V0 and C + n, n a
// whole number of slices):
// dimension 0 from -/+ V0, each in-slice dimension from its inner or its wrapped neighbour by
// the site's coordinate. Both candidates are loaded (each lies in the slab buffer, within V0
// of the site), so the select is a blend, not a masked load chaining the iterations.
template <int D, bool A, bool G, class Sum, class T, class Out>
double xy_slab(const XYSite<T>& site, const Lattice& lat, const T* C, const T* S, const T* X, int64_t n,
               const Coord<T>* coords, int64_t coords_stride, const Out& out) {
  const int64_t V0 = lat.volume / lat.extent[0];
  const XYSite<T> site_ = site;  // local copies: no store through out can alias them
  const Out o = out;
  const Coord<T>* co[D] = {};
  int64_t st[D] = {}, wrap[D] = {};
  Coord<T> last[D] = {};
  for (int mu = 1; mu < D; ++mu) {
    co[mu] = coords + (mu - 1) * coords_stride;
    st[mu] = lat.stride[mu];
    wrap[mu] = (lat.extent[mu] - 1) * lat.stride[mu];
    last[mu] = Coord<T>(lat.extent[mu] - 1);
  }
  auto body = [=](int64_t i) -> T {
    T fc[D], fs[D], bc[D], bs[D];
    fc[0] = C[i + V0], fs[0] = S[i + V0], bc[0] = C[i - V0], bs[0] = S[i - V0];
    for (int mu = 1; mu < D; ++mu) {
      const Coord<T> k = co[mu][i];
      const T fci = C[i + st[mu]], fco = C[i - wrap[mu]], fsi = S[i + st[mu]], fso = S[i - wrap[mu]];
      const T bci = C[i - st[mu]], bco = C[i + wrap[mu]], bsi = S[i - st[mu]], bso = S[i + wrap[mu]];
      fc[mu] = k == last[mu] ? fco : fci;
      fs[mu] = k == last[mu] ? fso : fsi;
      bc[mu] = k == 0 ? bco : bci;
      bs[mu] = k == 0 ? bso : bsi;
    }
    if (G) o(i, site_.template grad<D>(C[i], S[i], fc, fs, bc, bs), X[i]);
    return A ? site_.template action<D>(C[i], S[i], fc, fs) : T(0);
  };
  return blocked_sum<Sum>(0, n, body);
}

// This thread's slab buffers of cos (which = 0) and sin (1), kept between calls and grown when
// a call needs more: allocated and zero-filled in every call, they took 6 % of an XY HMC
// trajectory (64 x 64^2 float64, a chain per thread: eleven calls per trajectory).
template <class T>
T* slab_buffer(int which, size_t n) {
  thread_local std::vector<T> buf[2];
  if (buf[which].size() < n) buf[which].resize(n);
  return buf[which].data();
}

// The gradient goes to out (GradientOut, or the leapfrog's KickDriftOut, which also takes the
// site's angle for the drift); every site is handed over once.
template <int D, bool A, bool G, class T, class Acc, class Out>
void xy_run(const XYSite<T>& site, const Lattice& lat, int64_t batch, const T* theta, Acc* action,
            const Out& out, int nthreads) {
  const int64_t L0 = lat.extent[0], V0 = lat.volume / L0, V = lat.volume;
  const int64_t per_slab = std::min(L0, std::max<int64_t>(1, kSlabSites / V0));
  const int64_t n_slabs = (L0 + per_slab - 1) / per_slab;
  const int64_t n_items = batch * n_slabs;
  const bool vectors = xy_vector_rows<D, T>(lat.extent[D - 1]);
  const bool flat = D > 1 && lat.extent[D - 1] * int64_t(sizeof(T)) < kFlatRowBytes && !vectors;
  using Sum = std::conditional_t<std::is_same_v<Acc, double>, double, T>;  // as in stencil_run
  std::vector<double> partial(A ? n_items : 0);
  const int nt = resolve_threads(nthreads);
  // a site's sincos costs what ~4 sites of a phi^4 pass do: weighed as such, 16 x 32^2 runs on
  // both threads
  const bool par = nt > 1 && 4 * batch * V >= kParallelMinSites && n_items > 1;
  (void)par;
  bool out_of_memory = false;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (par)
#endif
  {
    T* cbuf = nullptr;  // set by the threads that get work
    T* sbuf = nullptr;
    const Coord<T>* coords = nullptr;  // the flat walk's coordinates (this thread's cache)
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t it = 0; it < n_items; ++it) {
      if (!cbuf) {
        try {  // an exception must not leave an OpenMP region
          cbuf = slab_buffer<T>(0, size_t((per_slab + 2) * V0));
          sbuf = slab_buffer<T>(1, size_t((per_slab + 2) * V0));
          if (flat) coords = slab_coords<D, T>(lat, per_slab * V0);
        } catch (const std::bad_alloc&) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
          out_of_memory = true;
        }
      }
      if (!sbuf || (flat && !coords)) continue;
      const int64_t b = it / n_slabs, t0 = (it % n_slabs) * per_slab;
      const int64_t n = std::min(L0, t0 + per_slab) - t0;
      const T* xb = theta + b * V;
      for (int64_t k = 0; k < n + 2; ++k) {  // slices t0-1 .. t0+n, wrapped
        const int64_t t = (t0 - 1 + k + L0) % L0;
        fill_cos_sin(xb + t * V0, V0, cbuf + k * V0, sbuf + k * V0);
      }
      double acc = 0;
      if (flat) {
        acc = xy_slab<D, A, G, Sum>(site, lat, cbuf + V0, sbuf + V0, xb + t0 * V0, n * V0, coords,
                                    per_slab * V0, out.at(b * V + t0 * V0));
      } else if (vectors) {
#if LFT_HAVE_SIMD
        LaneSums<Sum, Simd<T>::kWidth> sums;  // over the work item: fixed by the shape
        for (int64_t k = 1; k <= n; ++k)
          xy_slice_vectors<D, A, G>(site, lat, cbuf + k * V0, sbuf + k * V0, xb + (t0 + k - 1) * V0, V0,
                                    out.at(b * V + (t0 + k - 1) * V0), sums);
        sums.flush();
        acc = sums.total;
#endif
      } else {
        for (int64_t k = 1; k <= n; ++k)
          acc += xy_slice<D, A, G>(site, lat, cbuf + k * V0, sbuf + k * V0, xb + (t0 + k - 1) * V0, V0,
                                   out.at(b * V + (t0 + k - 1) * V0));
      }
      if (A) partial[it] = acc;
    }
  }
  if (out_of_memory) throw std::bad_alloc();
  if (A) sum_chunks(partial, batch, n_slabs, action);
}

// Angles in, sin/cos per link, then the same XYSite physics: the fallback for
// slices too large to buffer (no scratch at all).
template <class T>
struct XYDirectSite {
  XYSite<T> site;

  template <int D>
  static void cos_sin(const T* t, T* c, T* s) {
    for (int mu = 0; mu < D; ++mu) c[mu] = std::cos(t[mu]), s[mu] = std::sin(t[mu]);
  }
  template <int D>
  T action(T t, const T* fwd) const {
    T fc[D], fs[D];
    cos_sin<D>(fwd, fc, fs);
    return site.template action<D>(std::cos(t), std::sin(t), fc, fs);
  }
  template <int D>
  T grad(T t, const T* fwd, const T* bwd) const {
    T fc[D], fs[D], bc[D], bs[D];
    cos_sin<D>(fwd, fc, fs);
    cos_sin<D>(bwd, bc, bs);
    return site.template grad<D>(std::cos(t), std::sin(t), fc, fs, bc, bs);
  }
  template <int D>
  T action_grad(T t, const T* fwd, const T* bwd, T& g) const {
    g = grad<D>(t, fwd, bwd);
    return action<D>(t, fwd);
  }
};

template <class T, class Acc>
void xy_any(const Lattice& lat, int64_t batch, const T* theta, Acc* action, T* grad, const XYSite<T>& p,
            int nthreads) {
  if (lat.volume / lat.extent[0] > kMaxSliceSites) {
    stencil(XYDirectSite<T>{p}, lat, batch, theta, action, grad, nthreads);
    return;
  }
  dispatch_variant(lat.ndim, action, grad, [&](auto dim, auto a, auto g) {
    xy_run<decltype(dim)::value, decltype(a)::value, decltype(g)::value>(p, lat, batch, theta, action,
                                                                          GradientOut<T>{grad}, nthreads);
  });
}

}  // namespace

template <class T>
void xy(const Lattice& lat, int64_t batch, const T* theta, Out<T>* action, Out<T>* grad, const XYSite<T>& p,
        int nthreads) {
  checks::field(lat, batch, theta, "theta");
  checks::stencil_call(batch, lat.volume, theta, "theta", action, grad, p);
  check_threads(nthreads);
  xy_any(lat, batch, theta, action, grad, p, nthreads);
}

template <class T>
void energy(const XYSite<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action, Out<T>* grad,
            int nthreads) {
  xy_any(lat, batch, x, action, grad, p, nthreads);
}

template <class T>
void kick_drift(const XYSite<T>& p, const Lattice& lat, int64_t batch, const T* x, double* action, T* mom, T* xn,
                T kick, T eps, int nthreads) {
  if (lat.volume / lat.extent[0] > kMaxSliceSites) {
    stencil_kick_drift(XYDirectSite<T>{p}, lat, batch, x, action, mom, xn, kick, eps, nthreads);
    return;
  }
  auto run = [&](auto out) {
    dispatch_variant(lat.ndim, action, true, [&](auto dim, auto a, auto g) {
      xy_run<decltype(dim)::value, decltype(a)::value, decltype(g)::value>(p, lat, batch, x, action, out,
                                                                            nthreads);
    });
  };
  with_kick_drift_out(mom, xn, kick, eps, run);
}

template void xy<float>(const Lattice&, int64_t, const float*, float*, float*, const XYSite<float>&, int);
template void xy<double>(const Lattice&, int64_t, const double*, double*, double*, const XYSite<double>&, int);
template void energy<float>(const XYSite<float>&, const Lattice&, int64_t, const float*, double*, float*, int);
template void energy<double>(const XYSite<double>&, const Lattice&, int64_t, const double*, double*, double*,
                             int);
template void kick_drift<float>(const XYSite<float>&, const Lattice&, int64_t, const float*, double*, float*, float*,
                                float, float, int);
template void kick_drift<double>(const XYSite<double>&, const Lattice&, int64_t, const double*, double*, double*,
                                 double*, double, double, int);

}  // namespace cpu
}  // namespace lftaccel
