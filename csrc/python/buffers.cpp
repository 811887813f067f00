#include "buffers.hpp"

#include <cmath>
#include <cstdio>
#include <optional>
#include <stdexcept>

#ifdef LFTACCEL_WITH_CUDA
#include "lftaccel/cuda.hpp"
#endif

namespace lftaccel {

namespace {

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

Buffer parse_numpy(const py::array& a, const std::string& name, bool writable) {
  Buffer b;
  const py::dtype dt = a.dtype();
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 4) b.dtype = DType::F32;
  else if (kind == 'f' && size == 8) b.dtype = DType::F64;
  else if (kind == 'u' && size == 4) b.dtype = DType::U32;
  else
    throw py::type_error(name + " must have dtype float32 or float64 (uint32 for bits and accept flags), got " +
                         std::string(py::str(dt)));
  const char order = dt.byteorder();
  if (order == '>')
    throw py::type_error(name + " must be in native byte order, got a big-endian array");
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(name + " must be C-contiguous; got a non-contiguous (strided) array");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(name + " must be aligned");
  if (writable && !a.writeable()) throw py::value_error(name + " must be writable");
  b.ptr = const_cast<void*>(a.data());
  b.readonly = !a.writeable();
  for (py::ssize_t i = 0; i < a.ndim(); ++i) b.shape.push_back(a.shape(i));
  return b;
}

Buffer parse_cuda(py::handle obj, const std::string& name, bool writable) {
#ifndef LFTACCEL_WITH_CUDA
  (void)obj;
  (void)writable;
  throw py::value_error(name + " is a CUDA buffer, but this build of lftaccel has no CUDA support "
                               "(see lftaccel.build_info())");
#else
  Buffer b;
  b.cuda = true;
  std::optional<uintptr_t> producer_stream;
  try {
    py::object raw = obj.attr("__cuda_array_interface__");
    if (!py::isinstance<py::dict>(raw)) throw py::value_error("it is not a dict");
    py::dict cai = raw;
    for (const char* key : {"typestr", "shape", "data"})
      if (!cai.contains(key)) throw py::value_error(std::string("key '") + key + "' is missing");
    const std::string ts = py::str(cai["typestr"]);
    if (ts == "<f4") b.dtype = DType::F32;
    else if (ts == "<f8") b.dtype = DType::F64;
    else if (ts == "<u4") b.dtype = DType::U32;
    else throw py::type_error(name + " must have dtype float32 or float64, got typestr " + ts);
    for (auto s : py::tuple(cai["shape"])) b.shape.push_back(s.cast<int64_t>());
    for (auto s : b.shape)
      if (s < 0) throw py::value_error("negative extent in shape");
    py::tuple data = cai["data"];
    if (data.size() != 2) throw py::value_error("'data' must be (pointer, read_only)");
    b.ptr = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
    b.readonly = data[1].cast<bool>();
    // A mask would mark elements the kernels must not read; none of them takes one.
    if (cai.contains("mask") && !cai["mask"].is_none())
      throw py::value_error(name + " has a mask in its __cuda_array_interface__; masked arrays are not supported");
    // Version 3's 'stream': the producer may still have work on the data queued there, which
    // must finish before a kernel on the caller's stream reads or writes it. Absent or None: the
    // data are ready (torch's tensors export version 2, without the key).
    if (cai.contains("stream") && !cai["stream"].is_none()) {
      py::handle s = cai["stream"];
      if (!py::isinstance<py::int_>(s) || py::isinstance<py::bool_>(s))
        throw py::value_error("'stream' must be an integer or None, got " + type_name(s));
      const auto v = s.cast<int64_t>();
      if (v == 0)
        throw py::value_error("'stream' is 0, which the interface disallows as ambiguous (1: the legacy "
                              "default stream, 2: the per-thread default stream, else a cudaStream_t)");
      if (v < 0) throw py::value_error("'stream' must be positive, got " + std::to_string(v));
      producer_stream = uintptr_t(v);
    }
    if (cai.contains("strides") && !cai["strides"].is_none()) {
      py::tuple strides = cai["strides"];
      if (strides.size() != b.shape.size()) throw py::value_error("'strides' and 'shape' differ in length");
      int64_t expect = int64_t(b.itemsize());
      for (int i = int(b.shape.size()) - 1; i >= 0; --i) {
        if (b.shape[i] > 1 && strides[i].cast<int64_t>() != expect)
          throw py::value_error(name + " must be C-contiguous; got a non-contiguous (strided) buffer");
        expect *= b.shape[i];
      }
    }
  } catch (py::type_error& e) {
    const std::string what = e.what();
    if (what.rfind(name, 0) == 0) throw;
    throw py::value_error(name + " has a malformed __cuda_array_interface__: " + what);
  } catch (py::value_error& e) {
    const std::string what = e.what();
    if (what.rfind(name, 0) == 0) throw;
    throw py::value_error(name + " has a malformed __cuda_array_interface__: " + what);
  } catch (py::error_already_set& e) {
    throw py::value_error(name + " has a malformed __cuda_array_interface__: " + std::string(e.what()));
  } catch (py::cast_error& e) {
    throw py::value_error(name + " has a malformed __cuda_array_interface__: " + std::string(e.what()));
  }
  if (writable && b.readonly) throw py::value_error(name + " must be writable");
  // A misaligned element is a sticky cudaErrorMisalignedAddress, which ends the process's CUDA
  // context (torch's too); torch's tensors are always aligned, other producers need not be.
  if (reinterpret_cast<uintptr_t>(b.ptr) % b.itemsize() != 0)
    throw py::value_error(name + " must be aligned to its element size (" + std::to_string(b.itemsize()) +
                          " bytes)");
  if (b.numel() > 0) {
    b.device = cuda::pointer_device(b.ptr);
    if (b.device < 0)
      throw py::value_error(name + " claims __cuda_array_interface__ but does not point to device "
                                   "memory");
    // Waiting on the host, as Numba's consumers do by default: the kernels' stream is not known
    // here, and an event wait would need it. It costs a stall only for producers that name a
    // stream (CuPy, Numba), never for torch's tensors.
    if (producer_stream) {
      try {
        py::gil_scoped_release nogil;
        cuda::synchronize_stream(b.device, *producer_stream);
      } catch (const std::runtime_error& e) {
        throw std::runtime_error(name + ": waiting on the 'stream' of its __cuda_array_interface__ failed (" +
                                 e.what() + ")");
      }
    }
  }
  return b;
#endif
}

}  // namespace

Buffer parse_buffer(py::handle obj, const std::string& name, bool writable) {
  if (py::isinstance<py::array>(obj)) return parse_numpy(py::reinterpret_borrow<py::array>(obj), name, writable);
  if (py::hasattr(obj, "__cuda_array_interface__")) return parse_cuda(obj, name, writable);
  throw py::type_error(name + " must be a numpy array (CPU) or expose __cuda_array_interface__ "
                              "(CUDA), got " + type_name(obj));
}

void check_float(const Buffer& x, const std::string& name) {
  if (x.dtype == DType::U32)
    throw py::type_error(name + " must have dtype float32 or float64, got uint32");
}

void check_field(const Buffer& x, const std::string& name, int min_dims, int max_dims) {
  check_float(x, name);
  const int rank = int(x.shape.size());
  if (rank < 1 + min_dims || rank > 1 + max_dims)
    throw py::value_error(name + " must have shape (batch, *lattice) with " +
                          std::to_string(min_dims) + ".." + std::to_string(max_dims) +
                          " lattice dimensions, got shape " + x.shape_str());
  if (x.shape[0] < 1)
    throw py::value_error(name + " has an empty batch: shape " + x.shape_str());
  for (int i = 1; i < rank; ++i)
    if (x.shape[i] < 1)
      throw py::value_error(name + " has a lattice extent < 1: shape " + x.shape_str());
}

namespace {
bool overlap(const Buffer& a, const Buffer& b) {
  if (a.numel() == 0 || b.numel() == 0 || a.cuda != b.cuda) return false;
  const auto* a0 = static_cast<const char*>(a.ptr);
  const auto* b0 = static_cast<const char*>(b.ptr);
  return a0 < b0 + b.numel() * b.itemsize() && b0 < a0 + a.numel() * a.itemsize();
}
}  // namespace

void check_output(const Buffer& out, const std::string& name, const Buffer& x, DType dtype,
                  const std::vector<int64_t>& shape) {
  if (out.cuda != x.cuda || out.device != x.device)
    throw py::value_error(name + " must be on the same device as the input");
  if (out.dtype != dtype)
    throw py::type_error(name + " must have dtype " + dtype_name(dtype) + ", got " +
                         dtype_name(out.dtype));
  if (out.shape != shape) {
    Buffer tmp;
    tmp.shape = shape;
    throw py::value_error(name + " must have shape " + tmp.shape_str() + ", got " + out.shape_str());
  }
  if (out.readonly) throw py::value_error(name + " must be writable");
  if (overlap(out, x)) throw py::value_error(name + " must not overlap the input buffer");
}


void check_disjoint(const Buffer& a, const std::string& name_a, const Buffer& b,
                    const std::string& name_b) {
  if (overlap(a, b)) throw py::value_error(name_a + " and " + name_b + " must not overlap");
}

void check_finite(double v, const std::string& name) {
  if (!std::isfinite(v)) throw py::value_error(name + " must be finite, got " + format_real(v));
}

std::string format_real(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text;
}

}  // namespace lftaccel
