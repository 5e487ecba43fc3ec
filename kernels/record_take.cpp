// Hooks.take_events() (record_hooks.cpp holds the Hooks class and the module): what the hooks
// recorded while backward ran, handed to Python as the recording's BackwardEvents and their
// snapshots (what backward_run's Python path makes of the same steps, the same objects and
// numbers). A gradient that only the recording holds becomes a numpy array over its memory (what
// Tensor.numpy() gives, without a Python tensor in between); Python (TensorStore.capture_many)
// takes only the gradients the helper does not own.
//
// Part of the recorder's helper (gradviz/core/fastpath.py builds every file into one module).
#include "record_take.h"
#include "record_objects.h"

#include <torch/csrc/autograd/python_variable.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace py = pybind11;

const py::object& gradviz_dtype_name(at::ScalarType s);                                   // record_saved.cpp
void gradviz_stats_of(const std::vector<const at::Tensor*>& tensors, double* out);  // record_stats.cpp

namespace {

using gradviz_record::data_maker;
using gradviz_record::Devices;
using gradviz_record::Event;
using gradviz_record::finite_bits;
using gradviz_record::int_attr;
using gradviz_record::int_of;
using gradviz_record::Maker;
using gradviz_record::maker_of;
using gradviz_record::Meta;
using gradviz_record::numpy_dtype;
using gradviz_record::numpy_name;
using gradviz_record::set_int_attr;
using gradviz_record::Shapes;

py::object tensor_or_none(const at::Tensor& t) {
  if (!t.defined()) {
    return py::none();
  }
  return py::reinterpret_steal<py::object>(THPVariable_Wrap(t));
}

// A numpy array over the memory of `t` (a CPU tensor that fills its memory without gaps), which
// it keeps alive, with t's shape and strides, as t.numpy() makes it; None for a dtype numpy does
// not hold as it is (the recorder then takes the tensor itself).
py::object numpy_of(const at::Tensor& t) {
  PyObject* dtype = numpy_dtype(t.scalar_type());
  if (dtype == nullptr) return py::none();
  const auto item = static_cast<py::ssize_t>(t.element_size());
  std::vector<py::ssize_t> shape(t.sizes().begin(), t.sizes().end());
  std::vector<py::ssize_t> strides;
  strides.reserve(shape.size());
  for (auto s : t.strides()) strides.push_back(s * item);
  auto* held = new at::Tensor(t);
  py::capsule base(held, [](void* p) { delete static_cast<at::Tensor*>(p); });
  return py::array(py::reinterpret_borrow<py::dtype>(dtype), std::move(shape), std::move(strides), held->data_ptr(),
                   base);
}


// Whether every value of a CPU tensor that fills its memory without gaps is finite (None for
// dtypes without NaN): its numel values start at its data pointer, in some order.
py::object all_finite(const at::Tensor& t) {
  const int64_t n = t.numel();
  const void* p = t.const_data_ptr();
  switch (t.scalar_type()) {
    case at::kFloat: return py::bool_(finite_bits<uint32_t, 0x7f800000u>(p, n));
    case at::kDouble: return py::bool_(finite_bits<uint64_t, 0x7ff0000000000000u>(p, n));
    case at::kComplexFloat: return py::bool_(finite_bits<uint32_t, 0x7f800000u>(p, 2 * n));
    case at::kComplexDouble: return py::bool_(finite_bits<uint64_t, 0x7ff0000000000000u>(p, 2 * n));
    default: return py::none();
  }
}

// The tensors of `events`, each once: tensors[j] the j-th to appear (each step's grad_outputs,
// then its grad_inputs), then the bases of those that are views and are not among them;
// refs[j] how many references to tensors[j] we know of (its places in `events`, and one per
// listed view of it); order: each place's position j, -1 where the engine sent none.
struct Unique {
  std::vector<const at::TensorBase*> tensors;
  std::vector<int64_t> refs;
  std::vector<int64_t> order;
  int64_t count = 0;  // how many of `tensors` are in `events` (the bases come after)
};

// A table from TensorImpl to position (open addressing, linear probing, no deletions).
class Positions {
 public:
  explicit Positions(size_t expected) {
    size_t size = 16;
    while (size < 2 * expected + 16) size <<= 1;
    keys_.assign(size, nullptr);
    values_.assign(size, -1);
    mask_ = size - 1;
  }
  // The position of `key`, or `fresh` (then stored) when it is not in the table yet.
  int64_t find_or_add(const c10::TensorImpl* key, int64_t fresh, bool& added) {
    size_t h = (reinterpret_cast<uintptr_t>(key) >> 4) * 0x9E3779B97F4A7C15ull;
    for (size_t i = (h >> 20) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == key) {
        added = false;
        return values_[i];
      }
      if (keys_[i] == nullptr) {
        keys_[i] = key;
        values_[i] = fresh;
        added = true;
        return fresh;
      }
    }
  }

 private:
  std::vector<const c10::TensorImpl*> keys_;
  std::vector<int64_t> values_;
  size_t mask_;
};

Unique unique_tensors(const std::vector<Event>& events) {
  Unique u;
  size_t places = 0;
  for (const auto& ev : events) places += ev.grad_outputs.size() + ev.grad_inputs.size();
  u.order.reserve(places);
  Positions positions(places);
  auto note = [&u, &positions](const at::TensorBase& t) {
    bool added;
    auto j = positions.find_or_add(t.unsafeGetTensorImpl(), static_cast<int64_t>(u.tensors.size()), added);
    if (added) {
      u.tensors.push_back(&t);
      u.refs.push_back(0);
    }
    ++u.refs[j];
    return j;
  };
  for (const auto& ev : events) {
    for (const auto* list : {&ev.grad_outputs, &ev.grad_inputs}) {
      for (const auto& t : *list) u.order.push_back(t.defined() ? note(t) : -1);
    }
  }
  u.count = static_cast<int64_t>(u.tensors.size());
  for (int64_t j = 0; j < u.count; ++j) {
    if (u.tensors[j]->is_view()) note(u.tensors[j]->_base());  // (the view holds its base)
  }
  return u;
}

// For each tensor of `events` (u.tensors[j], j < u.count): whether nothing but `events` can
// reach its memory. Every reference to the memory must be accounted for: the storage's
// references are the tensors of `events` on it and the bases of those that are views; each such
// tensor's references are those of `events` and of the views of it, none weak (a Python object
// holds one: then it is not ours). Only plain CPU tensors that need no grad and fill their memory
// without gaps or overlaps (any order of dimensions: a transposed one too) count: a snapshot may
// share their memory.
std::vector<char> exclusive(const Unique& u) {
  const auto all = u.tensors.size();
  // the storages: how many of the tensors above hold each, and whether all of those are ours
  std::vector<std::pair<const c10::StorageImpl*, size_t>> by_storage;
  by_storage.reserve(all);
  std::vector<char> ours(all, 0);
  for (size_t j = 0; j < all; ++j) {
    const auto& t = *u.tensors[j];
    if (!t.has_storage()) continue;
    const auto& ptr = t.getIntrusivePtr();
    ours[j] = static_cast<int64_t>(ptr.use_count()) == u.refs[j] && ptr.weak_use_count() == 1;
    by_storage.emplace_back(t.storage().unsafeGetStorageImpl(), j);
  }
  std::sort(by_storage.begin(), by_storage.end());
  std::vector<char> storage_ok(all, 0);  // for each tensor: its storage's references all known
  for (size_t a = 0; a < by_storage.size();) {
    size_t b = a;
    bool all_ours = true;
    for (; b < by_storage.size() && by_storage[b].first == by_storage[a].first; ++b) {
      all_ours = all_ours && ours[by_storage[b].second];
    }
    const auto holders = static_cast<int64_t>(b - a);
    const bool ok = all_ours && static_cast<int64_t>(u.tensors[by_storage[a].second]->storage().use_count()) == holders;
    for (; a < b; ++a) storage_ok[by_storage[a].second] = ok;
  }
  std::vector<char> out(static_cast<size_t>(u.count), 0);
  for (int64_t j = 0; j < u.count; ++j) {
    const auto* t = u.tensors[j];
    out[j] = storage_ok[j] && t->layout() == at::kStrided && t->device().is_cpu() &&
             t->is_non_overlapping_and_dense() && !t->is_conj() && !t->is_neg() && !t->requires_grad();
  }
  return out;
}

}  // namespace

namespace gradviz_record __attribute__((visibility("hidden"))) {  // (as pybind11's own)


// The BackwardEvents of the steps taken, with their snapshots: what backward_run's Python
// path (capture_many or shapes_only, then _events) makes of the same steps, the same objects,
// uid numbers and store counters, made here. Empties the list.
//
// Without values: per step, a TensorData(shape, dtype, device, None, None, requires_grad, uid)
// for each gradient (grad_inputs', then grad_outputs', numbered from store._count on, as
// TensorStore.shapes_only numbers them), and BackwardEvent(i, node, grad_outputs, grad_inputs).
//
// With values: each tensor of the steps once (unique_tensors: in the order of first appearance,
// each step giving its grad_outputs, then its grad_inputs), snapshotted in that order as
// store.capture_many(tensors, stack, owned, finite, stats) takes them, owned[j] telling whether
// nothing but the steps can reach the tensor's memory (exclusive) and finite[j], for an owned
// floating or complex one, whether all its values are finite (all_finite; else None). An owned
// gradient of a dtype numpy holds is taken here: within the budget (store.budget_bytes,
// store.bytes_kept), TensorData(shape, dtype, "cpu", a numpy array over its memory (numpy_of),
// None, False, uid), filed in store._singles (finite unknown) or store._bad (not finite) as
// _owned_array does; past the budget, for float16/32/64, TensorData(shape, dtype, "cpu", None,
// None, False, uid) counted as dropped, whose stats (computed at the end, from the gradient's
// memory: stats_rows's numbers) are set then. Every other tensor (not owned, or an unusual
// dtype) goes, in runs of consecutive ones, with the store's counters written back first and
// read again after, to `more(items, owned=..., finite=...)` (capture_many with the helper's stack
// and stats): items the tensors (an owned one as its numpy array where numpy holds its dtype),
// with their owned and finite flags. Then each place's snapshot (None where the engine sent no
// tensor), BackwardEvent(i, node, grad_outputs, grad_inputs).
py::list take_events(std::vector<Event> events, bool keep, py::object store, py::handle data_class, py::handle event_class,
                     py::object more) {
  const Maker& data = data_maker(data_class.ptr());
  const Maker& event = maker_of(event_class.ptr(), {"index", "node", "grad_outputs", "grad_inputs"});
  Shapes shapes;
  Devices devices;
  py::list out(events.size());
  if (!keep) {
    long long count = int_attr(store.ptr(), "_count");
    for (size_t i = 0; i < events.size(); ++i) {
      const auto& ev = events[i];
      py::list lists[2] = {py::list(ev.meta_in.size()), py::list(ev.meta_out.size())};
      const gradviz_record::Metas* metas[2] = {&ev.meta_in, &ev.meta_out};
      for (int side = 0; side < 2; ++side) {
        for (size_t k = 0; k < metas[side]->size(); ++k) {
          const Meta& m = (*metas[side])[k];
          PyObject* d;
          if (!m.defined) {
            d = Py_NewRef(Py_None);
          } else {
            py::object uid = int_of(++count);
            PyObject* values[] = {shapes.get(m.shape), gradviz_dtype_name(m.dtype).ptr(), devices.get(m.device),
                                  Py_None, Py_None, m.requires_grad ? Py_True : Py_False, uid.ptr()};
            d = data.make(values);
          }
          PyList_SET_ITEM(lists[side].ptr(), static_cast<Py_ssize_t>(k), d);
        }
      }
      py::object index = int_of(static_cast<long long>(i)), node = int_of(ev.node);
      PyObject* values[] = {index.ptr(), node.ptr(), lists[1].ptr(), lists[0].ptr()};
      PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), event.make(values));
    }
    set_int_attr(store.ptr(), "_count", count);
    return out;
  }
  Unique seen = unique_tensors(events);
  auto mine = exclusive(seen);
  const auto n = static_cast<size_t>(seen.count);
  std::vector<py::object> snaps(n);
  const long long budget = int_attr(store.ptr(), "budget_bytes");
  long long kept = 0, count = 0, dropped = 0, dropped_bytes = 0;
  auto load = [&]() {
    kept = int_attr(store.ptr(), "bytes_kept");
    count = int_attr(store.ptr(), "_count");
    dropped = int_attr(store.ptr(), "dropped_count");
    dropped_bytes = int_attr(store.ptr(), "dropped_bytes");
  };
  auto save = [&]() {
    set_int_attr(store.ptr(), "bytes_kept", kept);
    set_int_attr(store.ptr(), "_count", count);
    set_int_attr(store.ptr(), "dropped_count", dropped);
    set_int_attr(store.ptr(), "dropped_bytes", dropped_bytes);
  };
  load();
  py::object singles = store.attr("_singles"), bad = store.attr("_bad");
  std::vector<size_t> run;  // the tensors for `more`, consecutive (not yet numbered)
  auto flush = [&]() {
    if (run.empty()) return;
    py::list items(run.size()), owned(run.size()), finite(run.size());
    for (size_t r = 0; r < run.size(); ++r) {
      const auto& t = static_cast<const at::Tensor&>(*seen.tensors[run[r]]);
      const bool own = mine[run[r]];
      py::object array = own ? numpy_of(t) : py::none();
      py::object item = array.is_none() ? tensor_or_none(t) : array;
      PyList_SET_ITEM(items.ptr(), static_cast<Py_ssize_t>(r), item.release().ptr());
      PyList_SET_ITEM(owned.ptr(), static_cast<Py_ssize_t>(r), py::bool_(own).release().ptr());
      PyList_SET_ITEM(finite.ptr(), static_cast<Py_ssize_t>(r), (own ? all_finite(t) : py::none()).release().ptr());
    }
    save();
    py::list got = more(items, py::arg("owned") = owned, py::arg("finite") = finite);
    TORCH_CHECK(got.size() == run.size(), "take_events: `more` gave ", got.size(), " snapshots for ", run.size());
    for (size_t r = 0; r < run.size(); ++r) snaps[run[r]] = got[r];
    load();
    run.clear();
  };
  std::vector<const at::Tensor*> past;  // past the budget: statistics of these, at the end
  std::vector<PyObject*> past_data;     // (their snapshots, held by `snaps`)
  for (size_t j = 0; j < n; ++j) {
    const auto& t = static_cast<const at::Tensor&>(*seen.tensors[j]);
    const auto type = t.scalar_type();
    if (!mine[j] || !numpy_name(type)) {
      run.push_back(j);
      continue;
    }
    const long long nbytes = static_cast<long long>(t.numel()) * static_cast<long long>(t.element_size());
    const bool fits = kept + nbytes <= budget;
    if (!fits && type != at::kFloat && type != at::kDouble && type != at::kHalf) {
      run.push_back(j);  // (capture_many's statistics of a group of one shape)
      continue;
    }
    flush();
    py::object uid = int_of(++count);
    PyObject* shape = shapes.get(t.sizes());
    PyObject* name = gradviz_dtype_name(type).ptr();
    PyObject* cpu = devices.get(t.device());
    if (fits) {
      // _owned_array: the gradient's own memory, within the budget
      kept += nbytes;
      py::object array = numpy_of(t);
      PyObject* values[] = {shape, name, cpu, array.ptr(), Py_None, Py_False, uid.ptr()};
      snaps[j] = py::reinterpret_steal<py::object>(data.make(values));
      py::object ok = all_finite(t);
      if (ok.is_none()) {
        if (PyList_Append(singles.ptr(), snaps[j].ptr()) < 0) throw py::error_already_set();
      } else if (!ok.cast<bool>()) {
        if (PyList_Append(bad.ptr(), snaps[j].ptr()) < 0) throw py::error_already_set();
      }
    } else {
      // past the budget: counted as dropped; statistics below when it has values
      dropped += 1;
      dropped_bytes += nbytes;
      PyObject* values[] = {shape, name, cpu, Py_None, Py_None, Py_False, uid.ptr()};
      snaps[j] = py::reinterpret_steal<py::object>(data.make(values));
      if (nbytes > 0) {
        past.push_back(&t);
        past_data.push_back(snaps[j].ptr());
      }
    }
  }
  flush();
  save();
  if (!past.empty()) {
    std::vector<double> st(4 * past.size());
    {
      py::gil_scoped_release nogil;  // (only `events` holds these gradients: nobody changes them)
      gradviz_stats_of(past, st.data());
    }
    static const char* const keys[] = {"min", "max", "mean", "norm"};
    for (size_t p = 0; p < past.size(); ++p) {
      py::dict d;
      for (int k = 0; k < 4; ++k) d[keys[k]] = py::float_(st[4 * p + k]);
      data.set(past_data[p], 4, d.ptr());
    }
  }
  // each step's snapshots: its grad_outputs', then its grad_inputs' places (seen.order)
  size_t at = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& ev = events[i];
    py::list lists[2] = {py::list(ev.grad_outputs.size()), py::list(ev.grad_inputs.size())};
    for (int side = 0; side < 2; ++side) {
      for (size_t k = 0; k < static_cast<size_t>(PyList_GET_SIZE(lists[side].ptr())); ++k) {
        const int64_t j = seen.order[at++];
        PyObject* d = j < 0 ? Py_None : snaps[static_cast<size_t>(j)].ptr();
        PyList_SET_ITEM(lists[side].ptr(), static_cast<Py_ssize_t>(k), Py_NewRef(d));
      }
    }
    py::object index = int_of(static_cast<long long>(i)), node = int_of(ev.node);
    PyObject* values[] = {index.ptr(), node.ptr(), lists[0].ptr(), lists[1].ptr()};
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), event.make(values));
  }
  return out;
}


}  // namespace gradviz_record
