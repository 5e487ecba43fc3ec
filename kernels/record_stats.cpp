// Summary statistics of gradients kept past the value budget, read straight from their memory.
//
// stats_rows(items) gives, for each nonempty real floating CPU tensor (or numpy array), its min,
// max, mean and 2-norm in float64: the numbers gradviz/core/tensors.py's _stats_rows gives for
// the tensor's values as a row, bit for bit, without stacking the tensors or copying them to
// float64 first. Both take the values v0, v1, ... in row-major order (whatever the strides),
// converted to double exactly, and add them (and their squares) in four lanes, value i in lane
// i % 4, each lane left to right, then the lanes left to right:
//   lane k     ((v[k] + v[k+4]) + v[k+8]) + ...    (numpy: cumsum of the row as (n/4, 4), padded
//                                                   with zeros, along its first axis)
//   mean       (((lane0 + lane1) + lane2) + lane3) / n, a zero as +0.0
//   norm       sqrt of the same sums of the squares, each square rounded to double before it is
//              added (the helper is built with -ffp-contract=off: no fused multiply-add)
//   min, max   the least and greatest value; NaN when any value is NaN; a zero as +0.0
// An infinite value makes the mean and norm infinite (or NaN: +inf and -inf in the mean), as
// torch's reductions do. (Four lanes: the compiler runs them side by side in vector registers.)
#include <torch/extension.h>
#include <pybind11/numpy.h>

#include <torch/csrc/autograd/python_variable.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

// One value as double, exactly (float16 and bfloat16 through float).
template <typename T>
inline double wide(T v) {
  return static_cast<double>(static_cast<float>(v));
}
template <>
inline double wide<double>(double v) {
  return v;
}

// The running statistics of one row: value i goes to lane i % 4.
struct Lanes {
  double lo[4], hi[4], sum[4] = {0.0, 0.0, 0.0, 0.0}, sq[4] = {0.0, 0.0, 0.0, 0.0};

  Lanes() {
    for (int k = 0; k < 4; ++k) {
      lo[k] = std::numeric_limits<double>::infinity();
      hi[k] = -std::numeric_limits<double>::infinity();
    }
  }

  inline void step(int k, double v) {
    lo[k] = v < lo[k] ? v : lo[k];
    hi[k] = v > hi[k] ? v : hi[k];
    sum[k] += v;
    sq[k] += v * v;
  }

  // The next `count` values of the row, at p; every call but the last must give a multiple of 4.
  // (Written as a loop over the four lanes, the compiler makes each group of four two vector
  // operations per statistic: 2.4x faster than four calls of step on this project's VM. Each
  // lane's operations are the same either way, and so are the numbers.)
  template <typename T>
  void feed(const T* p, int64_t count) {
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) {
      for (int k = 0; k < 4; ++k) {
        const double v = wide(p[i + k]);
        lo[k] = v < lo[k] ? v : lo[k];
        hi[k] = v > hi[k] ? v : hi[k];
        sum[k] += v;
        sq[k] += v * v;
      }
    }
    for (int k = 0; i < count; ++i, ++k) step(k, wide(p[i]));
  }

  void finish(int64_t n, double* out) const {
    const double total = ((sum[0] + sum[1]) + sum[2]) + sum[3];
    const double squares = ((sq[0] + sq[1]) + sq[2]) + sq[3];
    double l = lo[0], h = hi[0];
    for (int k = 1; k < 4; ++k) {
      l = lo[k] < l ? lo[k] : l;
      h = hi[k] > h ? hi[k] : h;
    }
    // a NaN value makes the sum of squares NaN, and only a NaN does (squares are never negative)
    const bool nan = std::isnan(squares);
    const double q = std::numeric_limits<double>::quiet_NaN();
    // (x + 0.0 turns -0.0 into +0.0 and leaves every other x as it is: which zero a comparison
    // keeps, or a sum of zeros gives, is no statistic)
    out[0] = nan ? q : l + 0.0;
    out[1] = nan ? q : h + 0.0;
    out[2] = total / static_cast<double>(n) + 0.0;
    out[3] = std::sqrt(squares);
  }
};

// Where a row's values are: `numel` values of type `type` at `data`, in row-major order over
// `sizes` with `strides` (in values, none negative).
struct Row {
  const char* data;
  at::ScalarType type;
  std::vector<int64_t> sizes, strides;
  int64_t numel;
  bool contiguous;  // row-major without gaps: value i at data[i]
};

// The statistics of one row into out[0..3].
template <typename T>
void row_stats(const Row& row, double* out) {
  const T* p = reinterpret_cast<const T*>(row.data);
  const int64_t n = row.numel;
  Lanes lanes;
  if (row.contiguous) {
    lanes.feed(p, n);
    lanes.finish(n, out);
    return;
  }
  // any strides: the values gathered in row-major order into a buffer (the innermost dimension in
  // a loop, the outer ones counted like an odometer), fed a buffer (a multiple of 4) at a time
  constexpr int64_t kBuffer = 1024;
  T buffer[kBuffer];
  int64_t filled = 0;
  const int64_t dims = static_cast<int64_t>(row.sizes.size());
  const int64_t inner = row.sizes[dims - 1], step = row.strides[dims - 1];
  std::vector<int64_t> index(dims, 0);
  int64_t offset = 0;
  for (int64_t done = 0; done < n; done += inner) {
    const T* q = p + offset;
    for (int64_t i = 0; i < inner; ++i) {
      buffer[filled++] = q[i * step];
      if (filled == kBuffer) {
        lanes.feed(buffer, filled);
        filled = 0;
      }
    }
    for (int64_t d = dims - 2; d >= 0; --d) {  // the next row of the innermost dimension
      offset += row.strides[d];
      if (++index[d] < row.sizes[d]) break;
      offset -= row.strides[d] * row.sizes[d];
      index[d] = 0;
    }
  }
  lanes.feed(buffer, filled);
  lanes.finish(n, out);
}

bool supported(at::ScalarType type) {
  return type == at::kFloat || type == at::kDouble || type == at::kHalf || type == at::kBFloat16;
}

// Whether `sizes` with `strides` lay the values out row-major without gaps (dimensions of size 1
// have any stride).
bool row_major(const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides) {
  int64_t expected = 1;
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    if (sizes[d] != 1 && strides[d] != expected) return false;
    expected *= sizes[d];
  }
  return true;
}

// The numpy dtypes a Row reads (in native byte order).
struct NumpyFloats {
  py::dtype f16{"float16"}, f32{"float32"}, f64{"float64"};
};

// The Row of a tensor or numpy array `obj`, which the caller keeps alive; false when stats_rows
// does not read it.
// The row of a tensor (see row_of), false where stats_rows refuses it.
bool tensor_row(const at::Tensor& t, Row& row) {
  if (!t.defined() || t.layout() != at::kStrided || !t.device().is_cpu() || t.is_conj() || t.is_neg() ||
      !supported(t.scalar_type()) || t.numel() == 0 || !t.has_storage()) {
    return false;
  }
  row.data = static_cast<const char*>(t.const_data_ptr());
  row.type = t.scalar_type();
  row.sizes.assign(t.sizes().begin(), t.sizes().end());
  row.strides.assign(t.strides().begin(), t.strides().end());
  row.numel = t.numel();
  return true;
}

// A row's bounds: strides not negative, row-major or not, a 0-d tensor as one value.
bool finish_row(Row& row) {
  for (auto s : row.strides) {
    if (s < 0) return false;
  }
  row.contiguous = row_major(row.sizes, row.strides);
  if (row.sizes.empty()) {  // (a 0-d tensor: one value)
    row.sizes.push_back(1);
    row.strides.push_back(1);
  }
  return true;
}

void stats_of_row(const Row& row, double* out) {
  switch (row.type) {
    case at::kFloat: row_stats<float>(row, out); break;
    case at::kDouble: row_stats<double>(row, out); break;
    case at::kHalf: row_stats<at::Half>(row, out); break;
    default: row_stats<at::BFloat16>(row, out); break;
  }
}

bool row_of(py::handle obj, const NumpyFloats& floats, Row& row) {
  if (THPVariable_Check(obj.ptr())) {
    if (!tensor_row(THPVariable_Unpack(obj.ptr()), row)) return false;
  } else if (py::isinstance<py::array>(obj)) {
    auto a = py::reinterpret_borrow<py::array>(obj);
    const auto dtype = a.dtype();
    if (dtype.equal(floats.f32)) {
      row.type = at::kFloat;
    } else if (dtype.equal(floats.f64)) {
      row.type = at::kDouble;
    } else if (dtype.equal(floats.f16)) {
      row.type = at::kHalf;
    } else {
      return false;
    }
    const auto item = static_cast<int64_t>(a.itemsize());
    row.sizes.assign(a.shape(), a.shape() + a.ndim());
    row.strides.clear();
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
      if (a.strides(d) < 0 || a.strides(d) % item != 0) return false;
      row.strides.push_back(a.strides(d) / item);
    }
    row.data = static_cast<const char*>(a.data());
    row.numel = static_cast<int64_t>(a.size());
    if (row.numel == 0) return false;
  } else {
    return false;
  }
  return finish_row(row);
}

// (len(items), 4) float64: min, max, mean, norm of each item (see the top of the file). Each item: a
// nonempty strided CPU tensor of float16, bfloat16, float32 or float64 without the conj or neg bit,
// or a nonempty numpy array of float16, float32 or float64 (owned gradients as numpy arrays, as
// capture_many may get them), strides not negative; anything else raises TypeError. Reads each where it is, any strides,
// without the GIL: nothing may change the items' values or memory meanwhile (the recorder's
// gradients: nothing else holds them).
py::array_t<double> stats_rows(const py::list& items) {
  const auto count = static_cast<py::ssize_t>(items.size());
  std::vector<Row> rows(items.size());
  std::vector<py::object> held(items.size());  // (each item held while the GIL is released)
  const NumpyFloats floats;
  for (size_t j = 0; j < items.size(); ++j) {
    held[j] = items[j];
    if (!row_of(held[j], floats, rows[j])) {
      throw py::type_error("stats_rows: item " + std::to_string(j) +
                           " is not a nonempty real floating CPU tensor of float16/bfloat16/float32/float64 "
                           "nor a nonempty numpy array of float16/float32/float64");
    }
  }
  py::array_t<double> result({count, static_cast<py::ssize_t>(4)});
  double* out = result.mutable_data();
  {
    py::gil_scoped_release nogil;  // (`held` holds the memory; nothing here touches Python)
    for (size_t j = 0; j < rows.size(); ++j) {
      stats_of_row(rows[j], out + 4 * j);
    }
  }
  return result;
}

}  // namespace

// min, max, mean, norm of each of `tensors` into out[4 * j ...], the numbers stats_rows gives for
// them (record_hooks.cpp's Hooks.take_events: gradients past the value budget). Each must be one
// stats_rows takes (else std::invalid_argument, before any is read). Call without the GIL only
// where nothing can change their memory meanwhile.
void gradviz_stats_of(const std::vector<const at::Tensor*>& tensors, double* out) {
  std::vector<Row> rows(tensors.size());
  for (size_t j = 0; j < tensors.size(); ++j) {
    if (!tensor_row(*tensors[j], rows[j]) || !finish_row(rows[j])) {
      throw std::invalid_argument("gradviz_stats_of: tensor " + std::to_string(j) + " is not one stats_rows reads");
    }
  }
  for (size_t j = 0; j < rows.size(); ++j) stats_of_row(rows[j], out + 4 * j);
}

void gradviz_add_stats(py::module_& m) {
  m.def("stats_rows", &stats_rows, py::arg("items"));
}
