// pybind11 bindings of the Monte Carlo kernels: HMC trajectories (real and
// Fourier space), Langevin steps, checkerboard Metropolis sweeps and the
// reverse-SDE step. Every argument is validated before any work is done.
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "common.hpp"

namespace lftaccel {
namespace {

struct Stream {
  uint32_t seed, chain_offset;
  uint64_t step;
};

Stream parse_stream(int64_t seed, int64_t step, int64_t chain_offset, int64_t batch) {
  Stream s{as_u32(seed, "seed"), as_u32(chain_offset, "chain_offset"), 0};
  if (step < 0) throw py::value_error("step must be >= 0, got " + std::to_string(step));
  if (chain_offset + batch > (int64_t(1) << 32))
    throw py::value_error("chain_offset + batch must be <= 2^32 (chain streams would repeat)");
  s.step = uint64_t(step);
  return s;
}

void check_positive(double v, const char* name) {
  check_finite(v, name);
  if (v <= 0) throw py::value_error(std::string(name) + " must be > 0, got " + format_real(v));
}

void check_count(int n, const char* name, int low) {
  if (n < low || n > (1 << 24))
    throw py::value_error(std::string(name) + " must be in [" + std::to_string(low) + ", 2^24], got " +
                          std::to_string(n));
}

// A (batch, *lattice) field updated in place.
struct State {
  Buffer x;
  Lattice lat;
  int64_t batch;
};

State parse_state(py::handle x, const char* name, int max_dims) {
  State s;
  s.x = parse_buffer(x, name, true);
  check_field(s.x, name, 1, max_dims);
  s.batch = s.x.shape[0];
  s.lat = make_lattice(int(s.x.shape.size()) - 1, s.x.shape.data() + 1);
  return s;
}

// A caller-owned work buffer of shape (k, *x.shape).
Buffer parse_work(py::handle work, const State& s, int64_t k) {
  Buffer w = parse_buffer(work, "work", true);
  std::vector<int64_t> shape{k};
  shape.insert(shape.end(), s.x.shape.begin(), s.x.shape.end());
  check_output(w, "work", s.x, s.x.dtype, shape);
  return w;
}

// The theory's validated parameters, in double; site<T>() casts them.
struct Theory {
  std::string name;
  std::vector<double> p;
  OscillatorSite<double> osc{};
};

Theory parse_theory(const std::string& name, const std::vector<double>& params, const State& s) {
  Theory t{name, params};
  auto need = [&](size_t n, const char* names) {
    if (params.size() != n)
      throw py::value_error("params for theory '" + name + "' must be " + names + ", got " +
                            std::to_string(params.size()) + " values");
  };
  if (name == "phi4") {
    need(2, "(kappa, lam)");
    check_finite(params[0], "kappa");
    check_finite(params[1], "lam");
    if (params[1] < 0) throw py::value_error("lam must be >= 0 (action bounded below)");
    check_fits(s.x, params[0], "kappa");
    check_fits(s.x, params[1], "lam");
  } else if (name == "xy") {
    need(1, "(beta,)");
    check_finite(params[0], "beta");
    check_fits(s.x, params[0], "beta");
  } else if (name == "oscillator") {
    need(5, "(beta, m, c0, c2, c4)");
    if (s.lat.ndim != 1)
      throw py::value_error("x must have shape (batch, n_slices) for theory 'oscillator', got " + s.x.shape_str());
    t.osc = oscillator_params(s.lat.volume, params[0], params[1], params[2], params[3], params[4]);
    check_oscillator_fits(s.x, t.osc);
  } else {
    throw py::value_error("theory must be 'phi4', 'xy' or 'oscillator', got '" + name + "'");
  }
  return t;
}

// Calls f(site) with the theory's per-site struct in precision T.
template <class T, class F>
void with_site(const Theory& t, const F& f) {
  if (t.name == "phi4") f(Phi4Site<T>{T(t.p[0]), T(t.p[1])});
  else if (t.name == "xy") f(XYSite<T>{T(t.p[0])});
  else f(cast<T>(t.osc));
}

HmcSettings<double> hmc_settings(const Buffer& x, double eps, int n_steps, const Stream& st, bool refresh,
                                 bool accept_reject) {
  check_step_size(x, eps, "eps");
  check_count(n_steps, "n_steps", 1);
  return HmcSettings<double>{eps, n_steps, st.seed, st.chain_offset, st.step, refresh, accept_reject};
}

template <class T>
HmcSettings<T> cast(const HmcSettings<double>& h) {
  return HmcSettings<T>{T(h.eps), h.n_steps, h.seed, h.chain_offset, h.step, h.refresh, h.accept_reject};
}

// An HMC call's outputs: energies (4, batch) float64 and accepted (batch,) uint32,
// disjoint from each other and from the work buffer.
void parse_outputs(const State& s, const Buffer& work, py::handle energies, py::handle accepted, Buffer& e,
                   Buffer& a) {
  e = parse_buffer(energies, "energies", true);
  check_output(e, "energies", s.x, DType::F64, {4, s.batch});
  a = parse_buffer(accepted, "accepted", true);
  check_output(a, "accepted", s.x, DType::U32, {s.batch});
  check_disjoint(e, "energies", a, "accepted");
  check_disjoint(work, "work", e, "energies");
  check_disjoint(work, "work", a, "accepted");
}

}  // namespace

void bind_mcmc(py::module_& m) {
  m.def(
      "hmc",
      [](py::object x, py::object work, py::object energies, py::object accepted, const std::string& theory,
         std::vector<double> params, double eps, int n_steps, int64_t seed, int64_t step, int64_t chain_offset,
         bool refresh, bool accept_reject, int nthreads, uintptr_t stream) {
        check_nthreads(nthreads);
        State s = parse_state(x, "x", 4);
        const Theory t = parse_theory(theory, params, s);
        Buffer w = parse_work(work, s, 3), e, a;
        parse_outputs(s, w, energies, accepted, e, a);
        const auto hs = hmc_settings(s.x, eps, n_steps, parse_stream(seed, step, chain_offset, s.batch), refresh,
                                     accept_reject);
        auto* E = static_cast<double*>(e.ptr);
        auto* A = static_cast<uint32_t*>(a.ptr);
        run(s.x, stream,
            [&](auto tag) {
              using T = decltype(tag);
              with_site<T>(t, [&](const auto& site) {
                cpu::hmc(s.lat, s.batch, static_cast<T*>(s.x.ptr), static_cast<T*>(w.ptr), E, A, site, cast<T>(hs),
                         nthreads);
              });
            },
            [&](auto tag, void* stp) {
              using T = decltype(tag);
#ifdef LFTACCEL_WITH_CUDA
              with_site<T>(t, [&](const auto& site) {
                cuda::hmc(s.lat, s.batch, static_cast<T*>(s.x.ptr), static_cast<T*>(w.ptr), E, A, site,
                          cast<T>(hs), stp);
              });
#endif
            });
      },
      py::arg("x"), py::arg("work"), py::arg("energies"), py::arg("accepted"), py::arg("theory"), py::arg("params"),
      py::arg("eps"), py::arg("n_steps"), py::arg("seed"), py::arg("step"), py::arg("chain_offset") = 0,
      py::arg("refresh") = true, py::arg("accept_reject") = true, py::arg("nthreads") = 0, py::arg("stream") = 0,
      "One fused HMC trajectory per chain, in place on x (see lftaccel/cpu.hpp).");

  m.def(
      "hmc_fourier",
      [](py::object coeffs, py::object work, py::object energies, py::object accepted, py::object basis,
         py::object inv_mass, std::vector<double> params, double eps, int n_steps, int64_t seed, int64_t step,
         int64_t chain_offset, bool refresh, bool accept_reject, int nthreads, uintptr_t stream) {
        check_nthreads(nthreads);
        State s = parse_state(coeffs, "coeffs", 1);
        const Theory t = parse_theory("oscillator", params, s);
        Buffer w = parse_work(work, s, 5), e, a;
        parse_outputs(s, w, energies, accepted, e, a);
        const int64_t N = s.lat.volume;
        Buffer B = parse_buffer(basis, "basis", false), im = parse_buffer(inv_mass, "inv_mass", false);
        for (auto* b : {&B, &im}) {
          const char* name = b == &B ? "basis" : "inv_mass";
          if (b->cuda != s.x.cuda || b->device != s.x.device)
            throw py::value_error(std::string(name) + " must be on the same device as coeffs");
          if (b->dtype != s.x.dtype) throw py::type_error(std::string(name) + " must have the dtype of coeffs");
          check_disjoint(*b, name, w, "work");
          check_disjoint(*b, name, s.x, "coeffs");
          check_disjoint(*b, name, e, "energies");
          check_disjoint(*b, name, a, "accepted");
        }
        if (B.shape != std::vector<int64_t>{N, N})
          throw py::value_error("basis must have shape (" + std::to_string(N) + ", " + std::to_string(N) + "), got " +
                                B.shape_str());
        if (im.shape != std::vector<int64_t>{N})
          throw py::value_error("inv_mass must have shape (" + std::to_string(N) + ",), got " + im.shape_str());
        const auto hs = hmc_settings(s.x, eps, n_steps, parse_stream(seed, step, chain_offset, s.batch), refresh,
                                     accept_reject);
        auto* E = static_cast<double*>(e.ptr);
        auto* A = static_cast<uint32_t*>(a.ptr);
        run(s.x, stream,
            [&](auto tag) {
              using T = decltype(tag);
              cpu::hmc_fourier(N, s.batch, static_cast<T*>(s.x.ptr), static_cast<T*>(w.ptr), E, A, cast<T>(t.osc),
                               static_cast<const T*>(B.ptr), static_cast<const T*>(im.ptr), cast<T>(hs), nthreads);
            },
            [&](auto tag, void* stp) {
              using T = decltype(tag);
#ifdef LFTACCEL_WITH_CUDA
              cuda::hmc_fourier(N, s.batch, static_cast<T*>(s.x.ptr), static_cast<T*>(w.ptr), E, A, cast<T>(t.osc),
                                static_cast<const T*>(B.ptr), static_cast<const T*>(im.ptr), cast<T>(hs), stp);
#endif
            });
      },
      py::arg("coeffs"), py::arg("work"), py::arg("energies"), py::arg("accepted"), py::arg("basis"),
      py::arg("inv_mass"), py::arg("params"), py::arg("eps"), py::arg("n_steps"), py::arg("seed"), py::arg("step"),
      py::arg("chain_offset") = 0, py::arg("refresh") = true, py::arg("accept_reject") = true,
      py::arg("nthreads") = 0, py::arg("stream") = 0,
      "One fused HMC trajectory of the oscillator in Fourier coordinates (params: beta, m, c0, c2, c4).");

  m.def(
      "langevin",
      [](py::object x, py::object work, const std::string& theory, std::vector<double> params, double eps,
         int n_steps, int64_t seed, int64_t step, int64_t chain_offset, int nthreads, uintptr_t stream) {
        check_nthreads(nthreads);
        State s = parse_state(x, "x", 4);
        const Theory t = parse_theory(theory, params, s);
        Buffer w = parse_work(work, s, 2);
        check_step_size(s.x, eps, "eps");
        check_fits(s.x, 2 * eps, "2 eps");  // the noise's sqrt(2 eps), formed in the buffer's precision
        check_count(n_steps, "n_steps", 0);
        const Stream st = parse_stream(seed, step, chain_offset, s.batch);
        run(s.x, stream,
            [&](auto tag) {
              using T = decltype(tag);
              with_site<T>(t, [&](const auto& site) {
                cpu::langevin(s.lat, s.batch, static_cast<T*>(s.x.ptr), static_cast<T*>(w.ptr), site, T(eps),
                              n_steps, st.seed, st.chain_offset, st.step, nthreads);
              });
            },
            [&](auto tag, void* stp) {
              using T = decltype(tag);
#ifdef LFTACCEL_WITH_CUDA
              with_site<T>(t, [&](const auto& site) {
                cuda::langevin(s.lat, s.batch, static_cast<T*>(s.x.ptr), static_cast<T*>(w.ptr), site, T(eps),
                               n_steps, st.seed, st.chain_offset, st.step, stp);
              });
#endif
            });
      },
      py::arg("x"), py::arg("work"), py::arg("theory"), py::arg("params"), py::arg("eps"), py::arg("n_steps"),
      py::arg("seed"), py::arg("step"), py::arg("chain_offset") = 0, py::arg("nthreads") = 0,
      py::arg("stream") = 0, "n_steps Langevin steps x <- x - eps dS/dx + sqrt(2 eps) eta, in place.");

  m.def(
      "metropolis",
      [](py::object x, py::object accepted, const std::string& theory, std::vector<double> params, double delta,
         int n_sweeps, int64_t seed, int64_t step, int64_t chain_offset, int nthreads, uintptr_t stream) {
        check_nthreads(nthreads);
        State s = parse_state(x, "x", 4);
        if (theory != "phi4" && theory != "xy")
          throw py::value_error("theory must be 'phi4' or 'xy' for Metropolis, got '" + theory + "'");
        const Theory t = parse_theory(theory, params, s);
        check_checkerboard(s.lat);  // before any work; std::invalid_argument reaches Python as ValueError
        Buffer a = parse_buffer(accepted, "accepted", true);
        check_output(a, "accepted", s.x, DType::F64, {s.batch});
        check_step_size(s.x, delta, "delta");
        check_count(n_sweeps, "n_sweeps", 0);
        const Stream st = parse_stream(seed, step, chain_offset, s.batch);
        if (st.step > (uint64_t(1) << 62)) throw py::value_error("step must be < 2^62");
        auto* A = static_cast<double*>(a.ptr);
        run(s.x, stream,
            [&](auto tag) {
              using T = decltype(tag);
              with_site<T>(t, [&](const auto& site) {
                using S = std::decay_t<decltype(site)>;
                if constexpr (!std::is_same_v<S, OscillatorSite<T>>)
                  cpu::metropolis(s.lat, s.batch, static_cast<T*>(s.x.ptr), A, site, T(delta), n_sweeps, st.seed,
                                  st.chain_offset, st.step, nthreads);
              });
            },
            [&](auto tag, void* stp) {
              using T = decltype(tag);
#ifdef LFTACCEL_WITH_CUDA
              with_site<T>(t, [&](const auto& site) {
                using S = std::decay_t<decltype(site)>;
                if constexpr (!std::is_same_v<S, OscillatorSite<T>>)
                  cuda::metropolis(s.lat, s.batch, static_cast<T*>(s.x.ptr), A, site, T(delta), n_sweeps, st.seed,
                                   st.chain_offset, st.step, stp);
              });
#endif
            });
      },
      py::arg("x"), py::arg("accepted"), py::arg("theory"), py::arg("params"), py::arg("delta"),
      py::arg("n_sweeps"), py::arg("seed"), py::arg("step"), py::arg("chain_offset") = 0, py::arg("nthreads") = 0,
      py::arg("stream") = 0,
      "n_sweeps checkerboard Metropolis sweeps in place; accepted[b] = accepted site updates of chain b.");

  m.def(
      "sde_step",
      [](py::object x, py::object score, const std::string& schedule, std::vector<double> params, double t,
         double dt, bool noise, int64_t seed, int64_t step, int64_t chain_offset, int nthreads, uintptr_t stream) {
        check_nthreads(nthreads);
        Buffer xb = parse_buffer(x, "x", true);
        check_float(xb, "x");
        if (xb.shape.size() < 2 || xb.shape[0] < 1)
          throw py::value_error("x must have shape (batch, *sites) with batch >= 1, got " + xb.shape_str());
        for (size_t i = 1; i < xb.shape.size(); ++i)
          if (xb.shape[i] < 1) throw py::value_error("x has an extent < 1: shape " + xb.shape_str());
        Buffer sb = parse_buffer(score, "score", false);
        if (sb.cuda != xb.cuda || sb.device != xb.device)
          throw py::value_error("score must be on the same device as x");
        if (sb.dtype != xb.dtype) throw py::type_error("score must have the dtype of x");
        if (sb.shape != xb.shape)
          throw py::value_error("score must have the shape of x " + xb.shape_str() + ", got " + sb.shape_str());
        check_disjoint(sb, "score", xb, "x");
        check_finite(t, "t");
        if (t < 0 || t > 1) throw py::value_error("t must be in [0, 1], got " + format_real(t));
        check_positive(dt, "dt");
        if (dt > t) throw py::value_error("dt must be <= t (the step goes from t to t - dt >= 0), got dt = " +
                                          format_real(dt) + ", t = " + format_real(t));
        SdeCoefficients c;
        if (schedule == "ve") {
          if (params.size() != 1) throw py::value_error("params for schedule 've' must be (sigma,)");
          check_positive(params[0], "sigma");
          c = sde_ve(params[0], t, dt, noise);
        } else if (schedule == "vp") {
          if (params.size() != 2) throw py::value_error("params for schedule 'vp' must be (beta_min, beta_max)");
          check_positive(params[0], "beta_min");
          check_positive(params[1], "beta_max");
          c = sde_vp(params[0], params[1], t, dt, noise);
        } else {
          throw py::value_error("schedule must be 've' or 'vp', got '" + schedule + "'");
        }
        for (double v : {c.drift_x, c.score, c.noise}) check_fits(xb, v, "an SDE coefficient");
        const int64_t batch = xb.shape[0], n = xb.numel() / batch;
        if (n > int64_t(0xffffffffu)) throw py::value_error("x has more than 2^32 sites per sample");
        const Stream st = parse_stream(seed, step, chain_offset, batch);
        run(xb, stream,
            [&](auto tag) {
              using T = decltype(tag);
              cpu::sde_step(batch, n, static_cast<T*>(xb.ptr), static_cast<const T*>(sb.ptr), c, st.seed,
                            st.chain_offset, st.step, nthreads);
            },
            [&](auto tag, void* stp) {
              using T = decltype(tag);
#ifdef LFTACCEL_WITH_CUDA
              cuda::sde_step(batch, n, static_cast<T*>(xb.ptr), static_cast<const T*>(sb.ptr), c, st.seed,
                             st.chain_offset, st.step, stp);
#endif
            });
      },
      py::arg("x"), py::arg("score"), py::arg("schedule"), py::arg("params"), py::arg("t"), py::arg("dt"),
      py::arg("noise") = true, py::arg("seed") = 0, py::arg("step") = 0, py::arg("chain_offset") = 0,
      py::arg("nthreads") = 0, py::arg("stream") = 0,
      "One reverse-SDE Euler-Maruyama step from t to t - dt, in place (see lftaccel/mcmc.hpp).");
}

}  // namespace lftaccel
