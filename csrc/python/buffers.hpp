// Validation of the buffers handed to the bindings. CPU buffers arrive as
// numpy arrays (buffer protocol), CUDA buffers through __cuda_array_interface__.
// Nothing is ever copied or converted: a buffer that would need it is refused
// with a TypeError/ValueError naming the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lftaccel {
namespace py = pybind11;

enum class DType { F32, F64, U32 };

inline const char* dtype_name(DType d) {
  return d == DType::F32 ? "float32" : d == DType::F64 ? "float64" : "uint32";
}

struct Buffer {
  void* ptr = nullptr;
  bool cuda = false;
  int device = -1;  // CUDA device, -1 on the CPU
  DType dtype = DType::F64;
  std::vector<int64_t> shape;
  bool readonly = false;

  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  size_t itemsize() const { return dtype == DType::F64 ? 8 : 4; }
  std::string shape_str() const {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
  }
};

Buffer parse_buffer(py::handle obj, const std::string& name, bool writable);

// Checks that `out` matches x's device, dtype and the expected shape, and does
// not overlap x.
void check_output(const Buffer& out, const std::string& name, const Buffer& x, DType dtype,
                  const std::vector<int64_t>& shape);

// Checks x has rank 1 + (min_dims..max_dims), a non-empty batch and extents >= 1.
void check_field(const Buffer& x, const std::string& name, int min_dims, int max_dims);

// Refuses two outputs that share memory.
void check_disjoint(const Buffer& a, const std::string& name_a, const Buffer& b,
                    const std::string& name_b);

void check_float(const Buffer& x, const std::string& name);

void check_finite(double v, const std::string& name);

// A real number for an error message, to 6 significant digits (std::to_string prints 1e-50 as
// 0.000000).
std::string format_real(double v);

}  // namespace lftaccel
