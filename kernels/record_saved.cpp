// What every node of the graph saved for backward, read in one call instead of a Python loop.
//
// Part of the recorder's helper (record_hooks.cpp holds the module; gradviz/core/fastpath.py builds
// the files into it). gradviz/core/saved.py's read_saved reads one node in Python: getattr of each
// `_saved_*` attribute of the node's class, then per value an isinstance test, a detach and the
// store's snapshot for a tensor, `plain_value` for anything else. read_saved(nodes, fns, start, ...)
// does the same for nodes[start:], in order, and sets each non-leaf node's `saved`:
//   - the attribute names are saved.saved_attribute_names' (asked once per node class); where the
//     class finds a name as a getset descriptor (torch's generated nodes), its C getter is called
//     directly, as getattr would call it;
//   - a RuntimeError while reading skips the attribute, as read_saved does;
//   - a tensor becomes, with values, store.capture(tensor.detach(), True) (a C++ detach: the same op
//     Tensor.detach() runs), or the snapshot capture would find by its storage key in the store's
//     table `seen` (looked up here: most saved tensors are forward outputs); without values, TensorData(shape, dtype, device, None, None, False,
//     uid) with the next number: what capture makes of a fresh detached tensor, which nothing
//     looks up again (so the store need not hold it);
//   - a tuple or list of tensors and Nones becomes `name[i]` entries; a tuple of ints below 2**63,
//     None, bool, int, float and str stay as they are; an int of 2**63 or more (torch's unsigned
//     view of a negative int64 such as dim=-1) loses 2**64; any other value is plain_value's.
// It stops at the first node it leaves to Python, before doing anything for that node, and returns
// its index: a custom Function's node (its saved_tensors), a tensor of a subclass or with symbolic
// sizes, a read that raised anything but a skipped RuntimeError (a tensor modified in place:
// read_saved raises torch's error again), a plain_value that raised. The caller reads that node in
// Python and calls again from the next one.
#include <torch/extension.h>

#include "record_objects.h"

#include <torch/csrc/autograd/python_cpp_function.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/DynamicTypes.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace py = pybind11;

// Torch's name of a dtype without the "torch." prefix (str(dtype).replace("torch.", "")), made once
// per dtype; record_events.cpp uses it too.
const py::object& gradviz_dtype_name(at::ScalarType s) {
  // (leaked on purpose: it holds Python objects past the interpreter's end)
  static auto& names = *new std::unordered_map<int, py::object>();
  auto key = static_cast<int>(s);
  auto it = names.find(key);
  if (it == names.end()) {
    std::string name = py::str(py::handle(reinterpret_cast<PyObject*>(torch::getTHPDtype(s)))).cast<std::string>();
    for (size_t at = name.find("torch."); at != std::string::npos; at = name.find("torch.", at)) {
      name.erase(at, 6);
    }
    it = names.emplace(key, py::str(name)).first;
  }
  return it->second;
}

namespace {

// One `_saved_*` attribute of a node class: its name, the key without the prefix, and the getset
// descriptor's C getter where the class has one (else getattr).
struct Attr {
  py::object name;
  py::object key;
  getter get = nullptr;
  void* closure = nullptr;
};

struct NodeClass {
  py::object held;      // the class, so its address stays its own
  bool python = false;  // read in Python (not a C++ node's class)
  std::vector<Attr> attrs;
};

// Per node class (leaked on purpose: it may hold Python objects after the interpreter's end).
auto& classes = *new std::unordered_map<PyTypeObject*, NodeClass>();

const NodeClass& class_of(PyObject* fn, const py::object& names_of) {
  PyTypeObject* type = Py_TYPE(fn);
  auto it = classes.find(type);
  if (it != classes.end()) {
    return it->second;
  }
  NodeClass c;
  c.held = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(type));
  c.python = !torch::autograd::THPCppFunction_Check(fn);
  if (!c.python) {
    const bool generic = type->tp_getattro == PyObject_GenericGetAttr;
    for (auto name : names_of(py::handle(fn))) {
      Attr a;
      a.name = py::reinterpret_borrow<py::object>(name);
      a.key = py::reinterpret_steal<py::object>(PyUnicode_Substring(name.ptr(), 7, PY_SSIZE_T_MAX));
      if (!a.key) throw py::error_already_set();  // (the name without "_saved_")
      PyObject* descr = generic ? _PyType_Lookup(type, name.ptr()) : nullptr;  // (borrowed)
      if (descr != nullptr && Py_IS_TYPE(descr, &PyGetSetDescr_Type)) {
        PyGetSetDef* def = reinterpret_cast<PyGetSetDescrObject*>(descr)->d_getset;
        a.get = def->get;
        a.closure = def->closure;
      }
      c.attrs.push_back(std::move(a));
    }
  }
  return classes.emplace(type, std::move(c)).first->second;
}

// What one attribute held, sorted: a tensor, a list of tensors (and Nones), or a plain value.
enum class Sort { Tensor, List, Plain };

struct Read {
  const Attr* attr;
  Sort sort;
  py::object value;  // the tensor, the list, or the plain value
};

// Whether `v` is a tensor this reader takes (a plain Tensor or a Parameter without symbolic sizes);
// sets `other` when it is a tensor of another kind (a subclass: read in Python).
bool our_tensor(PyObject* v, bool& other) {
  if (!THPVariable_Check(v)) {
    return false;
  }
  if (!THPVariable_CheckExact(v) || THPVariable_Unpack(v).unsafeGetTensorImpl()->has_symbolic_sizes_strides()) {
    other = true;
  }
  return true;
}

// The plain value of an int (exact type): itself below 2**63, else minus 2**64; null where
// plain_value must decide (an int too large even for that).
py::object plain_int(PyObject* v) {
  int overflow = 0;
  PyLong_AsLongLongAndOverflow(v, &overflow);
  if (overflow <= 0) {
    return py::reinterpret_borrow<py::object>(v);
  }
  unsigned long long u = PyLong_AsUnsignedLongLong(v);
  if (u == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    return py::object();
  }
  return py::reinterpret_steal<py::object>(PyLong_FromLongLong(static_cast<long long>(u)));
}

// Whether `v` is a tuple (exact type) of ints (exact type) below 2**63: plain_value keeps it as it is.
bool int_tuple(PyObject* v) {
  if (!PyTuple_CheckExact(v)) {
    return false;
  }
  const Py_ssize_t n = PyTuple_GET_SIZE(v);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyTuple_GET_ITEM(v, i);
    if (!PyLong_CheckExact(item)) {
      return false;
    }
    int overflow = 0;
    PyLong_AsLongLongAndOverflow(item, &overflow);
    if (overflow > 0) {
      return false;
    }
  }
  return true;
}

// The RuntimeError just raised: whether torch said a saved tensor was modified in place (or its
// text cannot be read: Python then reads the node). Clears it.
bool clear_runtime_error_is_inplace() {
  PyObject *type, *value, *trace;
  PyErr_Fetch(&type, &value, &trace);
  PyErr_NormalizeException(&type, &value, &trace);
  py::object held_type = py::reinterpret_steal<py::object>(type);
  py::object held_value = py::reinterpret_steal<py::object>(value);
  py::object held_trace = py::reinterpret_steal<py::object>(trace);
  PyObject* text = value != nullptr ? PyObject_Str(value) : nullptr;
  if (text == nullptr) {
    PyErr_Clear();
    return true;
  }
  const char* s = PyUnicode_AsUTF8(text);
  const bool inplace = s == nullptr || std::strstr(s, "modified by an inplace operation") != nullptr;
  PyErr_Clear();
  Py_DECREF(text);
  return inplace;
}

// Read every attribute of one node into `reads`. False: leave the node to Python (nothing done).
bool read_node(PyObject* fn, const NodeClass& c, const py::object& plain_value, std::vector<Read>& reads) {
  reads.clear();
  for (const auto& a : c.attrs) {
    PyObject* raw = a.get != nullptr ? a.get(fn, a.closure) : PyObject_GetAttr(fn, a.name.ptr());
    if (raw == nullptr) {
      if (PyErr_ExceptionMatches(PyExc_RuntimeError)) {
        if (clear_runtime_error_is_inplace()) {
          return false;  // (read_saved raises torch's error)
        }
        continue;  // read_saved skips the attribute
      }
      PyErr_Clear();
      return false;
    }
    py::object v = py::reinterpret_steal<py::object>(raw);
    bool other = false;
    if (our_tensor(raw, other)) {
      if (other) return false;
      reads.push_back(Read{&a, Sort::Tensor, std::move(v)});
      continue;
    }
    if (PyTuple_Check(raw) || PyList_Check(raw)) {
      const Py_ssize_t n = PySequence_Fast_GET_SIZE(raw);
      PyObject** items = PySequence_Fast_ITEMS(raw);
      bool all = n > 0, any = false;
      for (Py_ssize_t i = 0; i < n && all; ++i) {
        if (items[i] == Py_None) continue;
        if (our_tensor(items[i], other)) {
          any = true;
        } else {
          all = false;
        }
      }
      if (all && any) {
        if (other) return false;
        reads.push_back(Read{&a, Sort::List, std::move(v)});
        continue;
      }
      if (int_tuple(raw)) {
        reads.push_back(Read{&a, Sort::Plain, std::move(v)});
        continue;
      }
    } else if (raw == Py_None || PyBool_Check(raw) || PyFloat_CheckExact(raw) || PyUnicode_CheckExact(raw)) {
      reads.push_back(Read{&a, Sort::Plain, std::move(v)});
      continue;
    } else if (PyLong_CheckExact(raw)) {
      py::object p = plain_int(raw);
      if (p) {
        reads.push_back(Read{&a, Sort::Plain, std::move(p)});
        continue;
      }
    }
    PyObject* p = PyObject_CallOneArg(plain_value.ptr(), raw);
    if (p == nullptr) {
      PyErr_Clear();
      return false;  // (read_saved raises it)
    }
    reads.push_back(Read{&a, Sort::Plain, py::reinterpret_steal<py::object>(p)});
  }
  return true;
}


// A tuple of Python ints.
py::tuple int_tuple_of(c10::IntArrayRef values) {
  py::tuple out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    PyObject* item = PyLong_FromLongLong(values[i]);
    if (item == nullptr) throw py::error_already_set();
    PyTuple_SET_ITEM(out.ptr(), i, item);
  }
  return out;
}

class Snapshots {
 public:
  Snapshots(py::object capture, py::object seen, int64_t uid, py::object tensor_data)
      : capture_(std::move(capture)), seen_(std::move(seen)), uid_(uid), tensor_data_(std::move(tensor_data)),
        data_(gradviz_record::data_maker(tensor_data_.ptr())), true_(py::bool_(true)) {}

  // The snapshot of the tensor `v` (a plain Tensor or Parameter), as read_saved takes it.
  py::object operator()(PyObject* v) {
    const at::Tensor& t = THPVariable_Unpack(v);
    if (!capture_.is_none()) {
      PyObject* hit = storage_hit(t);
      if (hit != nullptr) {
        return py::reinterpret_borrow<py::object>(hit);
      }
      py::object detached = py::reinterpret_steal<py::object>(THPVariable_Wrap(t.detach()));
      PyObject* args[] = {detached.ptr(), true_.ptr()};
      PyObject* out = PyObject_Vectorcall(capture_.ptr(), args, 2, nullptr);
      if (out == nullptr) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(out);
    }
    // (one shape tuple and one device name per distinct value, shared by the snapshots; the
    // instance made as TensorData's __init__ makes it: record_objects.h's Maker)
    py::object uid = gradviz_record::int_of(++uid_);
    PyObject* args[] = {shapes_.get(t.sizes()), gradviz_dtype_name(t.scalar_type()).ptr(), devices_.get(t.device()),
                        Py_None, Py_None, Py_False, uid.ptr()};
    return py::reinterpret_steal<py::object>(data_.make(args));
  }

  int64_t uid() const { return uid_; }

 private:
  // With values: the snapshot that store.capture(t.detach(), True) finds by t's storage key, or
  // null (then capture takes it). capture first looks the fresh detached tensor up by its id, which
  // never hits, then (a strided tensor with memory) by (data_ptr, shape, strides, dtype, version,
  // device index): the detached tensor's are t's. On a hit capture also files the detached tensor
  // under its id, which nothing looks up again: no need to make it.
  PyObject* storage_hit(const at::Tensor& t) {
    if (seen_.is_none() || t.layout() != at::kStrided || t.is_meta() || t.is_nested() || !t.has_storage()) {
      return nullptr;
    }
    py::object ptr = py::reinterpret_steal<py::object>(PyLong_FromVoidPtr(t.data_ptr()));
    if (!ptr) throw py::error_already_set();
    py::tuple key = py::make_tuple(ptr, int_tuple_of(t.sizes()), int_tuple_of(t.strides()),
                                   py::handle(reinterpret_cast<PyObject*>(torch::getTHPDtype(t.scalar_type()))),
                                   py::int_(static_cast<int64_t>(t._version())), py::int_(t.get_device()));
    PyObject* hit = PyDict_GetItemWithError(seen_.ptr(), key.ptr());  // (borrowed)
    if (hit == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      return nullptr;
    }
    if (!PyTuple_CheckExact(hit) || PyTuple_GET_SIZE(hit) != 2) {
      return nullptr;
    }
    return PyTuple_GET_ITEM(hit, 0);
  }

  py::object capture_;
  py::object seen_;
  int64_t uid_;
  py::object tensor_data_;
  const gradviz_record::Maker& data_;
  gradviz_record::Shapes shapes_;
  gradviz_record::Devices devices_;
  py::object true_;
};

// Sets node.saved for nodes[start:] (leaves skipped) until one is left to Python; returns (that
// node's index or min(len(nodes), len(fns)), the last uid given). See the top of the file.
py::tuple read_saved(py::list nodes, py::list fns, int64_t start, py::object capture, py::object seen,
                     int64_t uid, py::object names_of, py::object plain_value, py::object tensor_data) {
  // (as zip(nodes, fns): the recorder's nodes that need no grad come after the walk's)
  const int64_t n = static_cast<int64_t>(std::min(nodes.size(), fns.size()));
  Snapshots snap(std::move(capture), std::move(seen), uid, std::move(tensor_data));
  py::str kind("kind"), leaf("leaf"), saved("saved");
  std::vector<Read> reads;
  int64_t i = start;
  for (; i < n; ++i) {
    PyObject* node = PyList_GET_ITEM(nodes.ptr(), i);
    py::object k = py::reinterpret_steal<py::object>(PyObject_GetAttr(node, kind.ptr()));
    if (!k) throw py::error_already_set();
    const int is_leaf = PyObject_RichCompareBool(k.ptr(), leaf.ptr(), Py_EQ);
    if (is_leaf < 0) throw py::error_already_set();
    if (is_leaf) continue;
    PyObject* fn = PyList_GET_ITEM(fns.ptr(), i);
    const NodeClass& c = class_of(fn, names_of);
    if (c.python || !read_node(fn, c, plain_value, reads)) {
      break;
    }
    py::dict out;
    for (const auto& r : reads) {
      if (r.sort == Sort::Tensor) {
        out[r.attr->key] = snap(r.value.ptr());
      } else if (r.sort == Sort::List) {
        const Py_ssize_t m = PySequence_Fast_GET_SIZE(r.value.ptr());
        PyObject** items = PySequence_Fast_ITEMS(r.value.ptr());
        for (Py_ssize_t j = 0; j < m; ++j) {
          py::object key = py::reinterpret_steal<py::object>(PyUnicode_FromFormat("%U[%zd]", r.attr->key.ptr(), j));
          if (!key) throw py::error_already_set();
          out[key] = items[j] == Py_None ? py::none() : snap(items[j]);
        }
      } else {
        out[r.attr->key] = r.value;
      }
    }
    if (PyObject_SetAttr(node, saved.ptr(), out.ptr()) < 0) throw py::error_already_set();
  }
  return py::make_tuple(i, snap.uid());
}

}  // namespace

// Adds read_saved to the helper's module.
void gradviz_add_saved(py::module_& m) {
  m.def("read_saved", &read_saved, py::arg("nodes"), py::arg("fns"), py::arg("start"), py::arg("capture"),
        py::arg("seen"), py::arg("uid"), py::arg("names_of"), py::arg("plain_value"), py::arg("tensor_data"));
}
