// Summary statistics of gradients kept past the value budget, read straight from their memory.
//
// stats_rows(items) gives, for each nonempty real floating CPU tensor (or numpy array), its min,
// max, mean and 2-norm in float64: the numbers gradviz/core/tensors.py's _stats_rows gives for
// the tensor's values as a row, bit for bit, without stacking the tensors or copying them to
// float64 first. Both take the values in row-major order (whatever the strides), converted to
// double exactly, and add them (and their squares) one after the other, left to right (numpy's
// cumsum order):
//   min, max   the least and greatest value; NaN when any value is NaN; a zero comes out as +0.0
//   mean       (((v0 + v1) + v2) + ...) / n
//   norm       sqrt(((v0*v0 + v1*v1) + v2*v2) + ...), each square rounded to double before it is
//              added (the helper is built with -ffp-contract=off: no fused multiply-add)
// An infinite value makes the mean and norm infinite (or NaN: +inf and -inf in the mean), as
// torch's reductions do.
#include <torch/extension.h>
#include <pybind11/numpy.h>

#include <torch/csrc/autograd/python_variable.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

// The running statistics of one row, its values added in order.
struct Running {
  double lo, hi, sum, sq;

  explicit Running(double v) : lo(v), hi(v), sum(v), sq(v * v) {}

  void add(double v) {
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
    sum += v;
    sq += v * v;
  }

  void finish(int64_t n, double* out) const {
    // a NaN value makes the sum of squares NaN, and only a NaN does (squares are never negative)
    const bool nan = std::isnan(sq);
    const double q = std::numeric_limits<double>::quiet_NaN();
    out[0] = nan ? q : lo + 0.0;  // (-0.0 + 0.0 is +0.0: which zero a comparison keeps is no statistic)
    out[1] = nan ? q : hi + 0.0;
    out[2] = sum / static_cast<double>(n);
    out[3] = std::sqrt(sq);
  }
};

// One value as double, exactly (float16 and bfloat16 through float).
template <typename T>
inline double wide(T v) {
  return static_cast<double>(static_cast<float>(v));
}
template <>
inline double wide<double>(double v) {
  return v;
}

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
  if (row.contiguous) {
    Running r(wide(p[0]));
    for (int64_t i = 1; i < n; ++i) r.add(wide(p[i]));
    r.finish(n, out);
    return;
  }
  // any strides: the innermost dimension in a loop, the outer ones counted like an odometer
  const int64_t dims = static_cast<int64_t>(row.sizes.size());
  const int64_t inner = row.sizes[dims - 1], step = row.strides[dims - 1];
  std::vector<int64_t> index(dims, 0);
  int64_t offset = 0;
  Running r(wide(p[0]));
  bool first = true;
  for (int64_t done = 0; done < n; done += inner) {
    const T* q = p + offset;
    for (int64_t i = first ? 1 : 0; i < inner; ++i) r.add(wide(q[i * step]));
    first = false;
    for (int64_t d = dims - 2; d >= 0; --d) {  // the next row of the innermost dimension
      offset += row.strides[d];
      if (++index[d] < row.sizes[d]) break;
      offset -= row.strides[d] * row.sizes[d];
      index[d] = 0;
    }
  }
  r.finish(n, out);
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
bool row_of(py::handle obj, const NumpyFloats& floats, Row& row) {
  if (THPVariable_Check(obj.ptr())) {
    const auto& t = THPVariable_Unpack(obj.ptr());
    if (!t.defined() || t.layout() != at::kStrided || !t.device().is_cpu() || t.is_conj() || t.is_neg() ||
        !supported(t.scalar_type()) || t.numel() == 0 || !t.has_storage()) {
      return false;
    }
    row.data = static_cast<const char*>(t.const_data_ptr());
    row.type = t.scalar_type();
    row.sizes.assign(t.sizes().begin(), t.sizes().end());
    row.strides.assign(t.strides().begin(), t.strides().end());
    row.numel = t.numel();
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

// (len(items), 4) float64: min, max, mean, norm of each item (see the top of the file). Each item: a
// nonempty strided CPU tensor of float16, bfloat16, float32 or float64 without the conj or neg bit,
// or a nonempty numpy array of float16, float32 or float64 (the numpy arrays Hooks.take hands
// back), strides not negative; anything else raises TypeError. Reads each where it is, any strides.
py::array_t<double> stats_rows(const py::list& items) {
  const auto count = static_cast<py::ssize_t>(items.size());
  std::vector<Row> rows(items.size());
  const NumpyFloats floats;
  for (size_t j = 0; j < items.size(); ++j) {
    if (!row_of(items[j], floats, rows[j])) {
      throw py::type_error("stats_rows: item " + std::to_string(j) +
                           " is not a nonempty real floating CPU tensor of float16/bfloat16/float32/float64 "
                           "nor a nonempty numpy array of float16/float32/float64");
    }
  }
  py::array_t<double> result({count, static_cast<py::ssize_t>(4)});
  double* out = result.mutable_data();
  {
    py::gil_scoped_release nogil;  // (`items` holds the memory; nothing here touches Python)
    for (size_t j = 0; j < rows.size(); ++j) {
      double* o = out + 4 * j;
      switch (rows[j].type) {
        case at::kFloat: row_stats<float>(rows[j], o); break;
        case at::kDouble: row_stats<double>(rows[j], o); break;
        case at::kHalf: row_stats<at::Half>(rows[j], o); break;
        default: row_stats<at::BFloat16>(rows[j], o); break;
      }
    }
  }
  return result;
}

}  // namespace

void gradviz_add_stats(py::module_& m) {
  m.def("stats_rows", &stats_rows, py::arg("items"));
}
