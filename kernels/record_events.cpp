// The forward capture's events in C: ForwardCapture._tf_after for the common op, without a Python
// call per event or per tensor.
//
// Part of the recorder's helper (record_hooks.cpp holds the module; gradviz/core/fastpath.py builds
// every file into it). record_capture.cpp's __torch_function__ hands an op here when its result is
// a plain torch.Tensor with a grad_fn, or a tuple or list, and the function's facts carry the event's (op, in place)
// (`_tf_facts`: a plain function, not a torch.ops overload, not an attribute view). gradviz_log_event
// then does what _tf_after, _scan_leaves and _log_op do, in the same order, or hands the op back to
// Python (NOT_HANDLED) before doing anything when it is unusual (a tuple or list result, like
// split's, is taken where its tensors are plain Tensors or Parameters and nothing in it is nested;
// its outputs are those tensors, in order):
//   - the inputs are tensors_in(args) + tensors_in(kwargs) where every tensor is a plain Tensor or
//     Parameter (strided, without symbolic sizes) and no argument is a dict or nested deeper than one
//     list or tuple; anything else goes back to Python;
//   - a source tensor (a leaf whose id is not in `_leaf_ids`) first used here is numbered as
//     _scan_leaves does (`_leaf_ids`, `leaf_seen`, `source_data`), unless the capture has an
//     `on_leaf` (finite differences run the op again: Python);
//   - with a store: `cancel()` asked, then the snapshots of the inputs and the output as
//     store.capture(t, True) gives them: the one in the store's table under (id(t), t._version) (most
//     are), else without values a new TensorData numbered next (filed in the table with the tensor,
//     as capture does), else with values, for a row-major CPU tensor of a dtype numpy holds within
//     the budget, what capture makes of it (found by storage key, or a copy of its values numbered
//     next: Snap::kept), else store.capture itself, called with torch functions
//     disabled (what it does to a plain tensor is the same; the mode would only call each tensor
//     method it uses, at about 20 us a snapshot); the source line from the capture's
//     SourceWalk (the instance's `_source`; without it, Python); then the ForwardEvent,
//     event_tensors, seen_ops, event_module, grad_fn_event and the max_nodes test as _log_op.
// `_depth` is raised where the Python parts raise it (around _scan_leaves and _log), so that the
// Python calls made from here (cancel, capture, the tensor's __hash__) are not logged as user ops.
#include <torch/extension.h>

#include <pybind11/numpy.h>

#include <ATen/PythonTorchFunctionTLS.h>

#include <torch/csrc/DynamicTypes.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/autograd/python_cpp_function.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "record_objects.h"

namespace py = pybind11;

const py::object& gradviz_dtype_name(at::ScalarType s);  // record_saved.cpp

namespace {

using gradviz_record::plain_class;

using gradviz_record::attr;
using gradviz_record::data_maker;
using gradviz_record::iattr;
using gradviz_record::int_attr;
using gradviz_record::Maker;
using gradviz_record::maker_of;
using gradviz_record::numpy_dtype;
using gradviz_record::set_iattr;
using gradviz_record::set_int_attr;

PyObject* s_depth = nullptr;
PyObject* s_store = nullptr;
PyObject* s_on_leaf = nullptr;
PyObject* s_leaf_ids = nullptr;
PyObject* s_leaf_seen = nullptr;
PyObject* s_source_data = nullptr;
PyObject* s_source = nullptr;
PyObject* s_cancel = nullptr;
PyObject* s_events = nullptr;
PyObject* s_event_tensors = nullptr;
PyObject* s_seen_ops = nullptr;
PyObject* s_event_module = nullptr;
PyObject* s_module_stack = nullptr;
PyObject* s_grad_fn_event = nullptr;
PyObject* s_max_nodes = nullptr;
PyObject* s_keep_values = nullptr;
PyObject* s_seen = nullptr;
PyObject* s_count = nullptr;
PyObject* s_capture = nullptr;
PyObject* s_event_class = nullptr;
PyObject* s_data_class = nullptr;
PyObject* s_cancelled = nullptr;
PyObject* s_too_many = nullptr;
PyObject* kw_inplace = nullptr;  // ("inplace",)
PyObject* s_cpu = nullptr;
PyObject* s_bytes_kept = nullptr;
PyObject* s_budget_bytes = nullptr;
PyObject* s_singles = nullptr;

// Raises the capture's `_depth` by one for its lifetime (lowered like Python's `finally:`).
class Depth {
 public:
  explicit Depth(PyObject* self) : self_(self) { add(1); }
  ~Depth() {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    try {
      add(-1);
    } catch (py::error_already_set&) {
    }
    PyErr_Clear();
    PyErr_Restore(et, ev, tb);
  }

 private:
  void add(long k) {
    py::object d = iattr(self_, s_depth);
    long v = PyLong_AsLong(d.ptr());
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    py::object now = py::reinterpret_steal<py::object>(PyLong_FromLong(v + k));
    if (!now) throw py::error_already_set();
    set_iattr(self_, s_depth, now.ptr());
  }
  PyObject* self_;
};

// Whether `v` is a tensor this path takes: a plain Tensor or Parameter, strided, fixed sizes.
bool plain_tensor(PyObject* v) {
  if (!plain_class(v)) return false;
  const at::Tensor& t = THPVariable_Unpack(v);
  return t.layout() == at::kStrided && !t.is_nested() &&
         !t.unsafeGetTensorImpl()->has_symbolic_sizes_strides();
}

// Appends the tensors of one argument as tensors_in does; false where this path does not take it.
bool add_tensors(PyObject* o, std::vector<PyObject*>& ins, bool nested) {
  if (THPVariable_Check(o)) {
    if (!plain_tensor(o)) return false;
    ins.push_back(o);
    return true;
  }
  if (PyDict_Check(o)) return false;
  if (PyTuple_Check(o) || PyList_Check(o)) {
    if (nested) return false;
    // (a list's items are read now; nothing runs between here and their use but this capture)
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    PyObject** items = PySequence_Fast_ITEMS(o);
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (!add_tensors(items[i], ins, true)) return false;
    }
  }
  return true;
}

// The Python object of a tensor's grad_fn (what t.grad_fn gives), or None.
py::object grad_fn_of(PyObject* v) {
  const at::Tensor& t = THPVariable_Unpack(v);
  const auto& fn = t.grad_fn();
  if (!fn) return py::none();
  return py::reinterpret_steal<py::object>(torch::autograd::functionToPyObject(fn));
}

bool is_leaf(PyObject* v) { return !THPVariable_Unpack(v).grad_fn(); }

py::object id_of(PyObject* v) {
  PyObject* id = PyLong_FromVoidPtr(v);
  if (id == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(id);
}

// A tuple of Python ints (a tensor's sizes or strides; equal to, and hashed as, torch.Size).
py::object int_tuple(c10::IntArrayRef v) {
  PyObject* out = PyTuple_New(static_cast<Py_ssize_t>(v.size()));
  if (out == nullptr) throw py::error_already_set();
  py::object held = py::reinterpret_steal<py::object>(out);
  for (size_t i = 0; i < v.size(); ++i) {
    PyObject* item = PyLong_FromLongLong(v[i]);
    if (item == nullptr) throw py::error_already_set();
    PyTuple_SET_ITEM(out, static_cast<Py_ssize_t>(i), item);
  }
  return held;
}

// store.capture(t, True) for one plain tensor (see the top of the file).
class Snap {
 public:
  Snap(PyObject* self, PyObject* store) : store_(store) {
    keep_values_ = PyObject_IsTrue(iattr(store, s_keep_values).ptr());
    if (keep_values_ < 0) throw py::error_already_set();
    seen_ = iattr(store, s_seen);
    if (!PyDict_CheckExact(seen_.ptr())) throw std::runtime_error("gradviz: the store's table is not a dict");
    data_class_ = attr(self, s_data_class);
  }

  py::object operator()(PyObject* v) {
    const at::Tensor& t = THPVariable_Unpack(v);
    py::object version = py::reinterpret_steal<py::object>(PyLong_FromLongLong(t._version()));
    if (!version) throw py::error_already_set();
    py::tuple key = py::make_tuple(id_of(v), version);
    PyObject* hit = PyDict_GetItemWithError(seen_.ptr(), key.ptr());  // (borrowed)
    if (hit != nullptr && PyTuple_CheckExact(hit) && PyTuple_GET_SIZE(hit) == 2) {
      return py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(hit, 0));
    }
    if (hit == nullptr && PyErr_Occurred()) throw py::error_already_set();
    if (keep_values_ && hit == nullptr) {
      PyObject* data = kept(v, t, key.ptr());
      if (data != nullptr) return py::reinterpret_steal<py::object>(data);
    }
    if (keep_values_ || hit != nullptr) {
      PyObject* args[] = {v, Py_True};
      py::object capture = attr(store_, s_capture);
      // (torch functions off, as torch._C.DisableTorchFunction: the tensor methods capture calls
      // then skip this mode, which (with _depth raised) would only call them; a fifth of the time)
      const auto was = at::impl::PythonTorchFunctionTLS::get_disabled_state();
      at::impl::PythonTorchFunctionTLS::set_disabled_state(at::impl::TorchFunctionDisabledState::ALL_DISABLED);
      PyObject* out = PyObject_Vectorcall(capture.ptr(), args, 2, nullptr);
      at::impl::PythonTorchFunctionTLS::set_disabled_state(was);
      if (out == nullptr) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(out);
    }
    // without values: TensorData(shape, dtype, device, None, None, requires_grad, uid), filed
    py::object count = iattr(store_, s_count);
    long long uid = PyLong_AsLongLong(count.ptr());
    if (uid == -1 && PyErr_Occurred()) throw py::error_already_set();
    py::object next = py::reinterpret_steal<py::object>(PyLong_FromLongLong(uid + 1));
    if (!next) throw py::error_already_set();
    set_iattr(store_, s_count, next.ptr());
    const auto sizes = t.sizes();
    py::tuple shape(sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) {
      PyObject* item = PyLong_FromLongLong(sizes[i]);
      if (item == nullptr) throw py::error_already_set();
      PyTuple_SET_ITEM(shape.ptr(), i, item);
    }
    py::object device = t.is_cpu() ? py::reinterpret_borrow<py::object>(s_cpu) : py::str(t.device().str());
    PyObject* args[] = {shape.ptr(), gradviz_dtype_name(t.scalar_type()).ptr(), device.ptr(), Py_None, Py_None,
                        t.requires_grad() ? Py_True : Py_False, next.ptr()};
    PyObject* out = data_maker(data_class_.ptr()).make(args);
    py::object data = py::reinterpret_steal<py::object>(out);
    py::tuple held = py::make_tuple(data, py::handle(v));
    if (PyDict_SetItem(seen_.ptr(), key.ptr(), held.ptr()) < 0) throw py::error_already_set();
    return data;
  }

 private:
  // With values, for a tensor not in the table under `key` (its (id, version)): the snapshot
  // store.capture(t, True) gives a CPU tensor of a dtype numpy holds that fills its memory in
  // row-major order, made here (a new reference), or null (nothing done: capture takes it).
  // capture looks it up by its storage key (data_ptr, shape, strides, dtype, version, device
  // index: -1 on the CPU) and, on a hit, files the tensor under its id with that snapshot; else,
  // within the budget, numbers it next (_count), copies its values (t.numpy(force=True).copy():
  // a row-major array of the same dtype, here one memcpy), counts the bytes (bytes_kept), lists
  // the snapshot in _singles and files it under both keys. Past the budget (statistics): capture.
  PyObject* kept(PyObject* v, const at::Tensor& t, PyObject* key) {
    if (!t.is_cpu() || t.layout() != at::kStrided || !t.has_storage() || t.is_conj() || t.is_neg() ||
        !t.is_contiguous() || t.numel() == 0) {
      return nullptr;
    }
    PyObject* np_dtype = numpy_dtype(t.scalar_type());
    if (np_dtype == nullptr) return nullptr;
    py::object ptr = py::reinterpret_steal<py::object>(PyLong_FromVoidPtr(t.data_ptr()));
    if (!ptr) throw py::error_already_set();
    py::tuple skey = py::make_tuple(ptr, int_tuple(t.sizes()), int_tuple(t.strides()),
                                    py::handle(reinterpret_cast<PyObject*>(torch::getTHPDtype(t.scalar_type()))),
                                    py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(key, 1)),
                                    py::int_(-1));
    PyObject* hit = PyDict_GetItemWithError(seen_.ptr(), skey.ptr());  // (borrowed)
    if (hit == nullptr && PyErr_Occurred()) throw py::error_already_set();
    if (hit != nullptr) {
      if (!PyTuple_CheckExact(hit) || PyTuple_GET_SIZE(hit) != 2) return nullptr;
      py::object data = py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(hit, 0));
      // (this object held too, or its id could be reused by a later tensor)
      py::tuple held = py::make_tuple(data, py::handle(v));
      if (PyDict_SetItem(seen_.ptr(), key, held.ptr()) < 0) throw py::error_already_set();
      return data.release().ptr();
    }
    const long long nbytes = static_cast<long long>(t.numel()) * static_cast<long long>(t.element_size());
    const long long bytes_kept = int_attr(store_, s_bytes_kept);
    const long long budget = int_attr(store_, s_budget_bytes);
    if (bytes_kept + nbytes > budget) return nullptr;  // (statistics: capture)
    const long long uid = int_attr(store_, s_count) + 1;
    std::vector<py::ssize_t> shape(t.sizes().begin(), t.sizes().end());
    py::array value(py::reinterpret_borrow<py::dtype>(np_dtype), shape);
    if (value.nbytes() != nbytes) throw std::runtime_error("gradviz: a snapshot's copy has the wrong size");
    std::memcpy(value.mutable_data(), t.const_data_ptr(), static_cast<size_t>(nbytes));
    set_int_attr(store_, s_count, uid);
    set_int_attr(store_, s_bytes_kept, bytes_kept + nbytes);
    py::object uid_obj = py::int_(uid);
    py::object shape_obj = int_tuple(t.sizes());
    PyObject* args[] = {shape_obj.ptr(), gradviz_dtype_name(t.scalar_type()).ptr(), s_cpu, value.ptr(),
                        Py_None, t.requires_grad() ? Py_True : Py_False, uid_obj.ptr()};
    PyObject* out = data_maker(data_class_.ptr()).make(args);
    py::object data = py::reinterpret_steal<py::object>(out);
    if (PyList_Append(iattr(store_, s_singles).ptr(), out) < 0) throw py::error_already_set();
    py::tuple held = py::make_tuple(data, py::handle(v));
    if (PyDict_SetItem(seen_.ptr(), key, held.ptr()) < 0) throw py::error_already_set();
    py::tuple held2 = py::make_tuple(data, py::handle(v));
    if (PyDict_SetItem(seen_.ptr(), skey.ptr(), held2.ptr()) < 0) throw py::error_already_set();
    return data.release().ptr();
  }

  PyObject* store_;
  int keep_values_ = 0;
  py::object seen_;
  py::object data_class_;
};

py::list snapshots(Snap& snap, const std::vector<PyObject*>& tensors) {
  py::list out(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    py::object d = snap(tensors[i]);
    PyList_SET_ITEM(out.ptr(), i, d.release().ptr());
  }
  return out;
}

void append(PyObject* list, PyObject* item) {
  if (PyList_Append(list, item) < 0) throw py::error_already_set();
}

}  // namespace

// The sentinel gradviz_log_event returns (borrowed) for an op it leaves to Python.
PyObject* gradviz_not_handled = nullptr;

// Logs the op whose result `out` (a plain Tensor with a grad_fn, or a tuple or list of results)
// joins the graph, as _tf_after does; `log` is the event's (op, in place). A tuple or list whose
// tensors (tensors_in: its items that are tensors; nothing nested) are all leaves is no event: `out`
// is returned as it is, as _tf_after does before anything else. Returns a new reference to `out`, null with an error
// set, or gradviz_not_handled (nothing done: the caller calls _tf_after).
PyObject* gradviz_log_event(PyObject* self, PyObject* log, PyObject* args, PyObject* kwargs, PyObject* out) {
  try {
    if (!PyTuple_Check(log) || PyTuple_GET_SIZE(log) != 2) return gradviz_not_handled;
    // the outputs: the tensor, or tensors_in of a tuple or list of tensors (and other values)
    std::vector<PyObject*> outs;
    const bool several = PyTuple_CheckExact(out) || PyList_CheckExact(out);
    if (several) {
      const Py_ssize_t n = PySequence_Fast_GET_SIZE(out);
      PyObject** items = PySequence_Fast_ITEMS(out);
      bool all_leaves = true;
      for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* item = items[i];
        if (THPVariable_Check(item)) {
          if (!plain_tensor(item)) return gradviz_not_handled;
          outs.push_back(item);
          all_leaves = all_leaves && is_leaf(item);
        } else if (PyDict_Check(item) || PyTuple_Check(item) || PyList_Check(item)) {
          return gradviz_not_handled;
        }
      }
      if (all_leaves) {  // (no result joins the graph: no event)
        Py_INCREF(out);
        return out;
      }
    } else {
      if (!plain_tensor(out)) return gradviz_not_handled;
      outs.push_back(out);
    }
    std::vector<PyObject*> ins;
    const Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    for (Py_ssize_t i = 0; i < nargs; ++i) {
      if (!add_tensors(PyTuple_GET_ITEM(args, i), ins, false)) return gradviz_not_handled;
    }
    if (kwargs != nullptr) {
      PyObject *k, *v;
      Py_ssize_t pos = 0;
      while (PyDict_Next(kwargs, &pos, &k, &v)) {
        if (!add_tensors(v, ins, false)) return gradviz_not_handled;
      }
    }
    // the instance's SourceWalk (without one, the Python walk counts frames from _log_op)
    PyObject** dictptr = _PyObject_GetDictPtr(self);
    PyObject* source = dictptr != nullptr && *dictptr != nullptr ? PyDict_GetItemWithError(*dictptr, s_source)
                                                                  : nullptr;  // (borrowed)
    if (source == nullptr) {
      if (PyErr_Occurred()) return nullptr;
      return gradviz_not_handled;
    }
    py::object hold_source = py::reinterpret_borrow<py::object>(source);
    py::object leaf_ids = iattr(self, s_leaf_ids);
    if (!PySet_CheckExact(leaf_ids.ptr())) return gradviz_not_handled;
    bool fresh = false;
    for (PyObject* t : ins) {
      if (is_leaf(t)) {
        const int has = PySet_Contains(leaf_ids.ptr(), id_of(t).ptr());
        if (has < 0) throw py::error_already_set();
        if (!has) {
          fresh = true;
          break;
        }
      }
    }
    py::object on_leaf = iattr(self, s_on_leaf);
    if (fresh && !on_leaf.is_none()) {
      return gradviz_not_handled;  // (finite differences may run the op again)
    }
    py::object store = iattr(self, s_store);
    // _depth raised around _scan_leaves and around _log: here once around both (nothing runs
    // between them), lowered on the way out
    std::optional<Depth> depth;
    if (fresh || !store.is_none()) depth.emplace(self);
    std::unique_ptr<Snap> snap;  // (made once an event, where a snapshot is taken)
    if (fresh) {
      // _scan_leaves: number each source first used here, in argument order
      py::object leaf_seen = iattr(self, s_leaf_seen);
      py::object source_data = iattr(self, s_source_data);
      for (PyObject* t : ins) {
        if (!is_leaf(t)) continue;
        py::object id = id_of(t);
        const int has = PySet_Contains(leaf_ids.ptr(), id.ptr());
        if (has < 0) throw py::error_already_set();
        if (has) continue;
        if (PySet_Add(leaf_ids.ptr(), id.ptr()) < 0) throw py::error_already_set();
        const Py_ssize_t n = PyObject_Length(leaf_seen.ptr());
        if (n < 0) throw py::error_already_set();
        py::object index = py::reinterpret_steal<py::object>(PyLong_FromSsize_t(n));
        if (!index) throw py::error_already_set();
        int rc;
#if PY_VERSION_HEX < 0x030D0000
        if (PyDict_CheckExact(leaf_seen.ptr())) {
          // (hash(t) is id(t), Tensor.__hash__'s: known without calling it)
          const Py_hash_t h = PyObject_Hash(id.ptr());
          if (h == -1) throw py::error_already_set();
          rc = _PyDict_SetItem_KnownHash(leaf_seen.ptr(), t, index.ptr(), h);
        } else {
          rc = PyObject_SetItem(leaf_seen.ptr(), t, index.ptr());
        }
#else
        rc = PyObject_SetItem(leaf_seen.ptr(), t, index.ptr());
#endif
        if (rc < 0) throw py::error_already_set();
        if (!store.is_none()) {
          if (!snap) snap = std::make_unique<Snap>(self, store.ptr());
          append(source_data.ptr(), (*snap)(t).ptr());
        }
      }
    }
    if (store.is_none()) {
      Py_INCREF(out);
      return out;
    }
    // _log_op
    py::object cancel = iattr(self, s_cancel);
    if (!cancel.is_none()) {
      PyObject* said = PyObject_CallNoArgs(cancel.ptr());
      if (said == nullptr) throw py::error_already_set();
      const int yes = PyObject_IsTrue(said);
      Py_DECREF(said);
      if (yes < 0) throw py::error_already_set();
      if (yes) {
        PyObject* r = PyObject_CallMethodNoArgs(self, s_cancelled);  // (raises Cancelled)
        if (r == nullptr) throw py::error_already_set();
        Py_DECREF(r);
      }
    }
    py::object events = iattr(self, s_events);
    const Py_ssize_t index = PyObject_Length(events.ptr());
    if (index < 0) throw py::error_already_set();
    if (!snap) snap = std::make_unique<Snap>(self, store.ptr());
    py::list in_data = snapshots(*snap, ins);
    py::list out_data = snapshots(*snap, outs);
    PyObject* where = PyObject_CallNoArgs(source);
    if (where == nullptr) throw py::error_already_set();
    py::object hold_where = py::reinterpret_steal<py::object>(where);
    py::object event_class = attr(self, s_event_class);
    py::object py_index = py::reinterpret_steal<py::object>(PyLong_FromSsize_t(index));
    if (!py_index) throw py::error_already_set();
    const Maker& event_maker = maker_of(event_class.ptr(), {"index", "op", "inputs", "outputs", "source", "module",
                                                             "use", "node", "inplace", "input_nodes"});
    PyObject* event;
    if (event_maker.direct()) {
      // (the fields __init__ leaves at their defaults: None, and a new list for input_nodes)
      py::list input_nodes;
      PyObject* fields[] = {py_index.ptr(), PyTuple_GET_ITEM(log, 0), in_data.ptr(), out_data.ptr(), where,
                            Py_None, Py_None, Py_None, PyTuple_GET_ITEM(log, 1), input_nodes.ptr()};
      event = event_maker.make(fields);
    } else {
      PyObject* eargs[] = {py_index.ptr(), PyTuple_GET_ITEM(log, 0), in_data.ptr(), out_data.ptr(), where,
                           PyTuple_GET_ITEM(log, 1)};
      event = PyObject_Vectorcall(event_class.ptr(), eargs, 5, kw_inplace);
      if (event == nullptr) throw py::error_already_set();
    }
    py::object hold_event = py::reinterpret_steal<py::object>(event);
    append(events.ptr(), event);
    py::list in_list(ins.size());
    for (size_t i = 0; i < ins.size(); ++i) {
      Py_INCREF(ins[i]);
      PyList_SET_ITEM(in_list.ptr(), i, ins[i]);
    }
    py::list out_list(outs.size());
    for (size_t i = 0; i < outs.size(); ++i) {
      Py_INCREF(outs[i]);
      PyList_SET_ITEM(out_list.ptr(), i, outs[i]);
    }
    append(iattr(self, s_event_tensors).ptr(), py::make_tuple(in_list, out_list).ptr());
    // _note_op: the nodes the op made (its output's) and consumed (its inputs')
    // (each output's node, None for a leaf: read once, for made and for grad_fn_event)
    std::vector<py::object> out_fns;
    py::list made;
    for (PyObject* t : outs) {
      out_fns.push_back(grad_fn_of(t));
      if (!out_fns.back().is_none()) made.append(out_fns.back());
    }
    py::list consumed;
    for (PyObject* t : ins) {
      if (!is_leaf(t)) consumed.append(grad_fn_of(t));
    }
    append(iattr(self, s_seen_ops).ptr(), py::make_tuple(made, consumed).ptr());
    py::object stack = iattr(self, s_module_stack);
    const Py_ssize_t depth_of_stack = PyObject_Length(stack.ptr());
    if (depth_of_stack < 0) throw py::error_already_set();
    if (depth_of_stack) {
      PyObject* top = PySequence_GetItem(stack.ptr(), depth_of_stack - 1);
      if (top == nullptr) throw py::error_already_set();
      py::object hold_top = py::reinterpret_steal<py::object>(top);
      append(iattr(self, s_event_module).ptr(), top);
    } else {
      append(iattr(self, s_event_module).ptr(), Py_None);
    }
    py::object grad_fn_event = iattr(self, s_grad_fn_event);
    for (const py::object& fn : out_fns) {
      if (fn.is_none()) continue;
      const int known = PySequence_Contains(grad_fn_event.ptr(), fn.ptr());
      if (known < 0) throw py::error_already_set();
      if (!known && PyObject_SetItem(grad_fn_event.ptr(), fn.ptr(), py_index.ptr()) < 0) {
        throw py::error_already_set();
      }
    }
    py::object max_nodes = iattr(self, s_max_nodes);
    if (!max_nodes.is_none()) {
      const Py_ssize_t n = PyObject_Length(grad_fn_event.ptr());
      if (n < 0) throw py::error_already_set();
      py::object count = py::reinterpret_steal<py::object>(PyLong_FromSsize_t(n));
      const int over = PyObject_RichCompareBool(count.ptr(), max_nodes.ptr(), Py_GT);
      if (over < 0) throw py::error_already_set();
      if (over) {
        PyObject* r = PyObject_CallMethodNoArgs(self, s_too_many);  // (raises GraphTooLarge)
        if (r == nullptr) throw py::error_already_set();
        Py_DECREF(r);
      }
    }
    Py_INCREF(out);
    return out;
  } catch (py::error_already_set& e) {
    e.restore();
    return nullptr;
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}

// Adds `EVENTS` (this file is built in) to the helper's module.
void gradviz_add_events(py::module_& m) {
  s_depth = PyUnicode_InternFromString("_depth");
  s_store = PyUnicode_InternFromString("store");
  s_on_leaf = PyUnicode_InternFromString("on_leaf");
  s_leaf_ids = PyUnicode_InternFromString("_leaf_ids");
  s_leaf_seen = PyUnicode_InternFromString("leaf_seen");
  s_source_data = PyUnicode_InternFromString("source_data");
  s_source = PyUnicode_InternFromString("_source");
  s_cancel = PyUnicode_InternFromString("cancel");
  s_events = PyUnicode_InternFromString("events");
  s_event_tensors = PyUnicode_InternFromString("event_tensors");
  s_seen_ops = PyUnicode_InternFromString("seen_ops");
  s_event_module = PyUnicode_InternFromString("event_module");
  s_module_stack = PyUnicode_InternFromString("module_stack");
  s_grad_fn_event = PyUnicode_InternFromString("grad_fn_event");
  s_max_nodes = PyUnicode_InternFromString("max_nodes");
  s_keep_values = PyUnicode_InternFromString("keep_values");
  s_seen = PyUnicode_InternFromString("_seen");
  s_count = PyUnicode_InternFromString("_count");
  s_capture = PyUnicode_InternFromString("capture");
  s_event_class = PyUnicode_InternFromString("_EVENT_CLASS");
  s_data_class = PyUnicode_InternFromString("_SNAPSHOT_CLASS");
  s_cancelled = PyUnicode_InternFromString("_raise_cancelled");
  s_too_many = PyUnicode_InternFromString("_raise_too_large");
  kw_inplace = Py_BuildValue("(s)", "inplace");
  s_cpu = PyUnicode_InternFromString("cpu");
  s_bytes_kept = PyUnicode_InternFromString("bytes_kept");
  s_budget_bytes = PyUnicode_InternFromString("budget_bytes");
  s_singles = PyUnicode_InternFromString("_singles");
  gradviz_not_handled = PyTuple_New(0);
  m.attr("EVENTS") = true;
}
