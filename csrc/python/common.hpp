// Helpers shared by the binding files: parsing a field and its outputs,
// parameter checks, and the CPU/CUDA dispatch with the GIL released.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "buffers.hpp"
#include "lftaccel/cpu.hpp"
#ifdef LFTACCEL_WITH_CUDA
#include "lftaccel/cuda.hpp"
#endif

namespace lftaccel {
namespace py = pybind11;

void bind_mcmc(py::module_& m);

// A Philox key or counter word: an integer in [0, 2^32).
inline uint32_t as_u32(int64_t v, const char* name) {
  if (v < 0 || v > int64_t(0xffffffffu))
    throw py::value_error(std::string(name) + " must be in [0, 2^32), got " + std::to_string(v));
  return uint32_t(v);
}

struct Field {
  Buffer x;
  std::optional<Buffer> action, grad;
  Lattice lat;
  int64_t batch = 0;
};

// The dtype an action output may have: the field's, or float64 for a float32 field, whose
// actions then stay in double to the end (see cuda.hpp).
inline DType action_dtype(const Buffer& x, const Buffer& action) {
  return x.dtype == DType::F32 && action.dtype == DType::F64 ? DType::F64 : x.dtype;
}

// Parses a (batch, *lattice) input and its optional outputs.
inline Field parse_field(py::handle x, py::handle action, py::handle grad, const char* xname, int min_d,
                  int max_d, const char* grad_name = "grad") {
  Field f;
  f.x = parse_buffer(x, xname, false);
  check_field(f.x, xname, min_d, max_d);
  f.batch = f.x.shape[0];
  f.lat = make_lattice(int(f.x.shape.size()) - 1, f.x.shape.data() + 1);
  if (action.is_none() && grad.is_none())
    throw py::value_error("at least one of action and grad must be given");
  if (!action.is_none()) {
    f.action = parse_buffer(action, "action", true);
    check_output(*f.action, "action", f.x, action_dtype(f.x, *f.action), {f.batch});
  }
  if (!grad.is_none()) {
    f.grad = parse_buffer(grad, grad_name, true);
    check_output(*f.grad, grad_name, f.x, f.x.dtype, f.x.shape);
    if (f.action) check_disjoint(*f.action, "action", *f.grad, grad_name);
  }
  return f;
}

template <class T>
T* ptr(const std::optional<Buffer>& b) {
  return b ? static_cast<T*>(b->ptr) : nullptr;
}

// call(action) with the action output as a kernel on a field of T takes it: T*, or for a float
// field with a float64 action (action_dtype) a float scratch on the CPU, widened after the call
// (the CPU kernels already add their float block sums in double and round the total once), and
// double* on a CUDA device, whose kernels then add their blocks' sums in double.
template <class T, class Call>
void cpu_with_action(const std::optional<Buffer>& action, int64_t batch, const Call& call) {
  if constexpr (std::is_same_v<T, float>) {
    if (action && action->dtype == DType::F64) {
      std::vector<float> scratch(static_cast<size_t>(batch));
      call(scratch.data());
      std::copy(scratch.begin(), scratch.end(), static_cast<double*>(action->ptr));
      return;
    }
  }
  call(ptr<T>(action));
}

template <class T, class Call>
void cuda_with_action(const std::optional<Buffer>& action, const Call& call) {
  if constexpr (std::is_same_v<T, float>) {
    if (action && action->dtype == DType::F64) return call(static_cast<double*>(action->ptr));
  }
  call(ptr<T>(action));
}

// More threads than this would only oversubscribe the machine, and libgomp
// aborts the process when it cannot create them.
inline int max_nthreads() { return cpu::max_nthreads(); }

inline void check_nthreads(int nthreads) {
  if (nthreads < 0 || nthreads > max_nthreads())
    throw py::value_error("nthreads must be in [0, " + std::to_string(max_nthreads()) +
                          "] (0: the OpenMP default), got " + std::to_string(nthreads));
}

// A float64 parameter must stay finite when the kernel runs in float32.
// (A value derived from finite parameters, such as an SDE coefficient, may already have
// overflowed in double.)
inline void check_fits(const Buffer& x, double v, const char* name) {
  if (!std::isfinite(v))
    throw py::value_error(std::string(name) + " overflows: the parameters are too large (got " +
                          format_real(v) + ")");
  if (x.dtype == DType::F32 && std::fabs(v) > double(std::numeric_limits<float>::max()))
    throw py::value_error(std::string(name) + " = " + format_real(v) +
                          " overflows float32; use float64 buffers");
}

// A step size: finite, > 0, and neither overflowing nor rounding to 0 in the buffer's precision
// (a float32 step that rounds to 0 would leave every chain where it is, reported as accepted).
inline void check_step_size(const Buffer& x, double v, const char* name) {
  check_finite(v, name);
  if (v <= 0) throw py::value_error(std::string(name) + " must be > 0, got " + format_real(v));
  check_fits(x, v, name);
  if (x.dtype == DType::F32 && float(v) == 0.0f)
    throw py::value_error(std::string(name) + " = " + format_real(v) + " rounds to 0 in float32");
}

#ifdef LFTACCEL_WITH_CUDA
// Makes `device` current for its lifetime, restoring the previous one after.
struct DeviceGuard {
  int prev;
  int dev;
  explicit DeviceGuard(int device) : prev(cuda::current_device()), dev(device) {
    if (prev != dev) cuda::set_device(dev);
  }
  ~DeviceGuard() {
    if (prev != dev) {
      try {
        cuda::set_device(prev);
      } catch (...) {
      }
    }
  }
};
#endif

// Runs cpu(T{}) or cuda(T{}, stream) for the buffer's float type, without the GIL
// and with the buffer's device current.
template <class Cpu, class Cuda>
void run(const Buffer& x, uintptr_t stream, Cpu&& cpu, Cuda&& cuda) {
  auto typed = [&](auto tag) {
    py::gil_scoped_release nogil;
    if (!x.cuda) {
      cpu(tag);
      return;
    }
#ifdef LFTACCEL_WITH_CUDA
    DeviceGuard guard(x.device);
    cuda(tag, reinterpret_cast<void*>(stream));
#else
    (void)cuda;
    (void)stream;
#endif
  };
  if (x.dtype == DType::F32) typed(float{});
  else typed(double{});
}

inline OscillatorSite<double> oscillator_params(int64_t n, double beta, double m, double c0, double c2,
                                         double c4) {
  check_finite(beta, "beta");
  check_finite(m, "m");
  check_finite(c0, "c0");
  check_finite(c2, "c2");
  check_finite(c4, "c4");
  if (beta <= 0) throw py::value_error("beta must be > 0, got " + format_real(beta));
  if (m <= 0) throw py::value_error("m must be > 0, got " + format_real(m));
  if (c4 < 0) throw py::value_error("c4 must be >= 0 (potential bounded below), got " + format_real(c4));
  if (c4 == 0 && c2 < 0)
    throw py::value_error("c2 must be >= 0 when c4 == 0 (potential bounded below), got " + format_real(c2));
  return OscillatorSite<double>{beta / double(n), m, c0, c2, c4};
}

inline void check_oscillator_fits(const Buffer& x, const OscillatorSite<double>& p) {
  check_fits(x, p.m / p.a, "m / a");
  check_fits(x, p.a, "a = beta / N");
  check_fits(x, p.c0, "c0");
  check_fits(x, p.c2, "c2");
  check_fits(x, p.c4, "c4");
}

template <class T>
OscillatorSite<T> cast(const OscillatorSite<double>& p) {
  return OscillatorSite<T>{T(p.a), T(p.m), T(p.c0), T(p.c2), T(p.c4)};
}

}  // namespace lftaccel
