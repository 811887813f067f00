// pybind11 bindings of lftaccel's kernels: validate every argument, then
// dispatch to the CPU loops or the CUDA kernels with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <algorithm>
#include <limits>
#include <optional>

#include "common.hpp"
#include "lftaccel/cpu.hpp"
#include "lftaccel/philox.hpp"
#ifdef LFTACCEL_WITH_CUDA
#include "lftaccel/cuda.hpp"
#endif

namespace py = pybind11;
using namespace lftaccel;

namespace {

py::dict build_info() {
  py::dict d;
  d["version"] = LFTACCEL_VERSION_STRING;
  d["source_commit"] = LFTACCEL_SOURCE_COMMIT;
  d["openmp"] = cpu::has_openmp();
  d["omp_max_threads"] = cpu::max_threads();
  d["compiler"] = LFTACCEL_COMPILER;
  d["cxx_flags"] = LFTACCEL_CXX_FLAGS;
#ifdef LFTACCEL_WITH_CUDA
  d["cuda"] = true;
  d["cuda_architectures"] = LFTACCEL_CUDA_ARCHS;
  d["cuda_version"] = LFTACCEL_CUDA_VERSION;
  d["cuda_inflight_bytes"] = LFTACCEL_CUDA_INFLIGHT_BYTES;
  d["cuda_devices"] = cuda::device_names();
#else
  d["cuda"] = false;
  d["cuda_architectures"] = "";
  d["cuda_version"] = "";
  d["cuda_inflight_bytes"] = 0;
  d["cuda_devices"] = std::vector<std::string>{};
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  bind_mcmc(m);
  m.doc() = "lftaccel compiled kernels (use the lftaccel package, not this module)";
  m.def("build_info", &build_info);
  m.def("max_nthreads", &max_nthreads, "Largest nthreads the kernels accept (4 x processors).");

  m.def(
      "phi4",
      [](py::object x, py::object action, py::object grad, double kappa, double lam, int nthreads,
         uintptr_t stream) {
        check_finite(kappa, "kappa");
        check_finite(lam, "lam");
        if (lam < 0) throw py::value_error("lam must be >= 0 (action bounded below), got " + format_real(lam));
        check_nthreads(nthreads);
        Field f = parse_field(x, action, grad, "x", 1, 4);
        check_fits(f.x, kappa, "kappa");
        check_fits(f.x, lam, "lam");
        run(f.x, stream,
            [&](auto t) {
              using T = decltype(t);
              cpu_with_action<T>(f.action, f.batch, [&](T* a) {
                cpu::phi4<T>(f.lat, f.batch, static_cast<const T*>(f.x.ptr), a, ptr<T>(f.grad),
                             Phi4Site<T>{T(kappa), T(lam)}, nthreads);
              });
            },
            [&](auto t, void* st) {
              using T = decltype(t);
#ifdef LFTACCEL_WITH_CUDA
              cuda_with_action<T>(f.action, [&](auto* a) {
                cuda::phi4<T, std::remove_pointer_t<decltype(a)>>(f.lat, f.batch, static_cast<const T*>(f.x.ptr), a,
                                                                  ptr<T>(f.grad), Phi4Site<T>{T(kappa), T(lam)}, st);
              });
#endif
            });
      },
      py::arg("x"), py::arg("action") = py::none(), py::arg("grad") = py::none(),
      py::arg("kappa"), py::arg("lam"), py::arg("nthreads") = 0, py::arg("stream") = 0,
      "phi^4 (hopping form) action per configuration and/or gradient, into caller-owned outputs.");

  m.def(
      "xy",
      [](py::object x, py::object action, py::object grad, double beta, int nthreads, uintptr_t stream) {
        check_finite(beta, "beta");
        check_nthreads(nthreads);
        Field f = parse_field(x, action, grad, "x", 1, 4);
        check_fits(f.x, beta, "beta");
        run(f.x, stream,
            [&](auto t) {
              using T = decltype(t);
              cpu_with_action<T>(f.action, f.batch, [&](T* a) {
                cpu::xy<T>(f.lat, f.batch, static_cast<const T*>(f.x.ptr), a, ptr<T>(f.grad), XYSite<T>{T(beta)},
                           nthreads);
              });
            },
            [&](auto t, void* st) {
              using T = decltype(t);
#ifdef LFTACCEL_WITH_CUDA
              cuda_with_action<T>(f.action, [&](auto* a) {
                cuda::xy<T, std::remove_pointer_t<decltype(a)>>(f.lat, f.batch, static_cast<const T*>(f.x.ptr), a,
                                                                ptr<T>(f.grad), XYSite<T>{T(beta)}, st);
              });
#endif
            });
      },
      py::arg("x"), py::arg("action") = py::none(), py::arg("grad") = py::none(),
      py::arg("beta"), py::arg("nthreads") = 0, py::arg("stream") = 0,
      "XY model action per configuration and/or gradient (angles in radians).");

  m.def(
      "oscillator",
      [](py::object x, py::object action, py::object grad, double beta, double m_, double c0, double c2,
         double c4, int nthreads, uintptr_t stream) {
        check_nthreads(nthreads);
        Field f = parse_field(x, action, grad, "x", 1, 1);
        const auto p = oscillator_params(f.lat.volume, beta, m_, c0, c2, c4);
        check_oscillator_fits(f.x, p);
        run(f.x, stream,
            [&](auto t) {
              using T = decltype(t);
              cpu_with_action<T>(f.action, f.batch, [&](T* a) {
                cpu::oscillator<T>(f.lat.volume, f.batch, static_cast<const T*>(f.x.ptr), a, ptr<T>(f.grad),
                                   cast<T>(p), nthreads);
              });
            },
            [&](auto t, void* st) {
              using T = decltype(t);
#ifdef LFTACCEL_WITH_CUDA
              cuda_with_action<T>(f.action, [&](auto* a) {
                cuda::oscillator<T, std::remove_pointer_t<decltype(a)>>(
                    f.lat.volume, f.batch, static_cast<const T*>(f.x.ptr), a, ptr<T>(f.grad), cast<T>(p), st);
              });
#endif
            });
      },
      py::arg("x"), py::arg("action") = py::none(), py::arg("grad") = py::none(),
      py::arg("beta"), py::arg("m"), py::arg("c0"), py::arg("c2"), py::arg("c4"),
      py::arg("nthreads") = 0, py::arg("stream") = 0,
      "Oscillator path action S_E and/or gradient, paths of shape (batch, N), a = beta / N.");

  m.def(
      "oscillator_fourier",
      [](py::object coeffs, py::object path, py::object action, py::object grad_coeffs,
         py::object grad_path, double beta, double m_, double c0, double c2, double c4, int nthreads,
         uintptr_t stream) {
        check_nthreads(nthreads);
        Field f = parse_field(coeffs, action, grad_coeffs, "coeffs", 1, 1, "grad_coeffs");
        Buffer x = parse_buffer(path, "path", false);
        check_float(x, "path");
        if (x.cuda != f.x.cuda || x.device != f.x.device)
          throw py::value_error("path must be on the same device as coeffs");
        if (x.dtype != f.x.dtype) throw py::type_error("path must have the dtype of coeffs");
        if (x.shape != f.x.shape)
          throw py::value_error("path must have the shape of coeffs " + f.x.shape_str() + ", got " + x.shape_str());
        std::optional<Buffer> gx;
        if (!grad_path.is_none()) {
          gx = parse_buffer(grad_path, "grad_path", true);
          check_output(*gx, "grad_path", f.x, f.x.dtype, f.x.shape);
          check_output(*gx, "grad_path", x, f.x.dtype, f.x.shape);
          if (f.action) check_disjoint(*f.action, "action", *gx, "grad_path");
          if (f.grad) check_disjoint(*f.grad, "grad_coeffs", *gx, "grad_path");
        }
        if (f.action) check_output(*f.action, "action", x, action_dtype(f.x, *f.action), f.action->shape);
        if (f.grad) check_output(*f.grad, "grad_coeffs", x, f.x.dtype, f.grad->shape);
        const int64_t n = f.lat.volume;
        const auto p = oscillator_params(n, beta, m_, c0, c2, c4);
        check_oscillator_fits(f.x, p);
        run(f.x, stream,
            [&](auto t) {
              using T = decltype(t);
              cpu_with_action<T>(f.action, f.batch, [&](T* a) {
                cpu::oscillator_fourier<T>(n, f.batch, static_cast<const T*>(f.x.ptr), static_cast<const T*>(x.ptr),
                                           a, ptr<T>(f.grad), ptr<T>(gx), cast<T>(p), nthreads);
              });
            },
            [&](auto t, void* st) {
              using T = decltype(t);
#ifdef LFTACCEL_WITH_CUDA
              cuda_with_action<T>(f.action, [&](auto* a) {
                cuda::oscillator_fourier<T, std::remove_pointer_t<decltype(a)>>(
                    n, f.batch, static_cast<const T*>(f.x.ptr), static_cast<const T*>(x.ptr), a, ptr<T>(f.grad),
                    ptr<T>(gx), cast<T>(p), st);
              });
#endif
            });
      },
      py::arg("coeffs"), py::arg("path"), py::arg("action") = py::none(), py::arg("grad_coeffs") = py::none(),
      py::arg("grad_path") = py::none(), py::kw_only(), py::arg("beta"), py::arg("m"), py::arg("c0"),
      py::arg("c2"), py::arg("c4"), py::arg("nthreads") = 0, py::arg("stream") = 0,
      "Matsubara oscillator action: kinetic term on the real Fourier coefficients, potential on the path.");

  m.def(
      "philox4x32_10",
      [](std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
        const Philox4x32 r = philox4x32_10(Philox4x32{{counter[0], counter[1], counter[2], counter[3]}},
                                           key[0], key[1]);
        return std::array<uint32_t, 4>{r.v[0], r.v[1], r.v[2], r.v[3]};
      },
      py::arg("counter"), py::arg("key"), "One Philox4x32-10 block: 4 counter words, 2 key words.");

  m.def(
      "philox_fill",
      [](py::object out, const std::string& kind, int64_t seed, int64_t step, int64_t purpose,
         int64_t chain_offset, int nthreads, uintptr_t stream) {
        check_nthreads(nthreads);
        const uint32_t s = as_u32(seed, "seed"), pu = as_u32(purpose, "purpose"),
                       co = as_u32(chain_offset, "chain_offset");
        if (step < 0) throw py::value_error("step must be >= 0, got " + std::to_string(step));
        Buffer o = parse_buffer(out, "out", true);
        if (o.shape.size() < 2 || o.shape[0] < 1)
          throw py::value_error("out must have shape (batch, *sites) with batch >= 1, got " + o.shape_str());
        int64_t n_sites = 1;
        for (size_t i = 1; i < o.shape.size(); ++i) n_sites *= o.shape[i];
        if (kind == "bits") {
          if (o.dtype != DType::U32) throw py::type_error("out must have dtype uint32 for kind='bits'");
          if (o.shape.back() != 4) throw py::value_error("out must have a last dimension of 4 for kind='bits'");
          n_sites /= 4;
        } else if (kind == "uniform" || kind == "normal") {
          check_float(o, "out");
        } else {
          throw py::value_error("kind must be 'bits', 'uniform' or 'normal', got '" + kind + "'");
        }
        if (n_sites > int64_t(0xffffffffu)) throw py::value_error("out has more than 2^32 sites per chain");
        const int64_t batch = o.shape[0];
        if (int64_t(co) + batch > (int64_t(1) << 32))
          throw py::value_error("chain_offset + batch must be <= 2^32 (chain numbers would wrap and "
                                "streams repeat), got " + std::to_string(int64_t(co) + batch));
        if (n_sites == 0) return;  // nothing to draw (and no device to touch)
        const uint64_t st64 = uint64_t(step);
        if (o.dtype == DType::U32) {
          uint32_t* p = static_cast<uint32_t*>(o.ptr);
          py::gil_scoped_release nogil;
          if (!o.cuda) cpu::philox_bits(p, batch, n_sites, s, co, st64, pu, nthreads);
#ifdef LFTACCEL_WITH_CUDA
          else {
            DeviceGuard guard(o.device);
            cuda::philox_bits(p, batch, n_sites, s, co, st64, pu, reinterpret_cast<void*>(stream));
          }
#endif
          return;
        }
        const bool normal = kind == "normal";
        run(o, stream,
            [&](auto t) {
              using T = decltype(t);
              if (normal) cpu::philox_normal<T>(static_cast<T*>(o.ptr), batch, n_sites, s, co, st64, pu, nthreads);
              else cpu::philox_uniform<T>(static_cast<T*>(o.ptr), batch, n_sites, s, co, st64, pu, nthreads);
            },
            [&](auto t, void* stp) {
              using T = decltype(t);
#ifdef LFTACCEL_WITH_CUDA
              if (normal) cuda::philox_normal<T>(static_cast<T*>(o.ptr), batch, n_sites, s, co, st64, pu, stp);
              else cuda::philox_uniform<T>(static_cast<T*>(o.ptr), batch, n_sites, s, co, st64, pu, stp);
#endif
            });
      },
      py::arg("out"), py::arg("kind"), py::kw_only(), py::arg("seed"), py::arg("step"), py::arg("purpose"),
      py::arg("chain_offset") = 0, py::arg("nthreads") = 0, py::arg("stream") = 0,
      "Fills out (batch, *sites) from the Philox streams key=(seed, chain_offset+b), counter=(site, step, purpose).");
}
