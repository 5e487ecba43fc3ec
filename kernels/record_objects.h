// The Python objects the recorder's helper makes, shared by its files (record_events.cpp: the
// forward events, record_take.cpp: the backward ones): the recording's dataclass instances (Maker),
// the numpy dtype of a tensor's dtype, Python ints and the int attributes of the capture and the
// store, and one shape tuple / device name per distinct value.
//
// Part of the recorder's helper (gradviz/core/fastpath.py builds every file into one module and
// hashes this header with the sources). Everything here is called with the GIL held. The
// functions are `inline` (one definition for the module): the tables they keep (numpy dtypes,
// Makers) are one per module, not one per file.
#pragma once

#include <torch/extension.h>
#include <pybind11/numpy.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace gradviz_record __attribute__((visibility("hidden"))) {  // (as pybind11's own)

namespace py = pybind11;

inline py::object attr(PyObject* obj, PyObject* name) {
  PyObject* v = PyObject_GetAttr(obj, name);
  if (v == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(v);
}

// An instance attribute of `obj` (the capture's lists and counters, the store's): read from the
// instance's dict, where Python's getattr finds it too (neither class has a data descriptor of
// these names), else by getattr. Saves the class lookup of each of some thirty reads an event.
inline py::object iattr(PyObject* obj, PyObject* name) {
  PyObject** dict = _PyObject_GetDictPtr(obj);
  if (dict != nullptr && *dict != nullptr) {
    PyObject* v = PyDict_GetItemWithError(*dict, name);  // (borrowed)
    if (v != nullptr) return py::reinterpret_borrow<py::object>(v);
    if (PyErr_Occurred()) throw py::error_already_set();
  }
  return attr(obj, name);
}

// Sets an instance attribute of `obj` (into the instance's dict, where setattr puts it).
inline void set_iattr(PyObject* obj, PyObject* name, PyObject* v) {
  PyObject** dict = _PyObject_GetDictPtr(obj);
  const int rc = dict != nullptr && *dict != nullptr ? PyDict_SetItem(*dict, name, v) : PyObject_SetAttr(obj, name, v);
  if (rc < 0) throw py::error_already_set();
}

// A new Python int.
inline py::object int_of(long long v) {
  PyObject* o = PyLong_FromLongLong(v);
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

// The value of a Python int (an error where it is none or does not fit).
inline long long int_value(PyObject* v) {
  const long long n = PyLong_AsLongLong(v);
  if (n == -1 && PyErr_Occurred()) throw py::error_already_set();
  return n;
}

// An int instance attribute (`iattr`), and setting one (`set_iattr`).
inline long long int_attr(PyObject* obj, PyObject* name) { return int_value(iattr(obj, name).ptr()); }

inline void set_int_attr(PyObject* obj, PyObject* name, long long n) { set_iattr(obj, name, int_of(n).ptr()); }

// The same by a C string: getattr(obj, name) and setattr(obj, name, n), Python's own lookups.
inline long long int_attr(PyObject* obj, const char* name) {
  PyObject* v = PyObject_GetAttrString(obj, name);
  if (v == nullptr) throw py::error_already_set();
  py::object held = py::reinterpret_steal<py::object>(v);
  return int_value(v);
}

inline void set_int_attr(PyObject* obj, const char* name, long long n) {
  if (PyObject_SetAttrString(obj, name, int_of(n).ptr()) < 0) throw py::error_already_set();
}

// The name of numpy's dtype for the dtypes numpy holds as they are (what Tensor.numpy() gives),
// else null.
inline const char* numpy_name(at::ScalarType s) {
  switch (s) {
    case at::kHalf: return "float16";
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kComplexFloat: return "complex64";
    case at::kComplexDouble: return "complex128";
    case at::kBool: return "bool";
    case at::kByte: return "uint8";
    case at::kChar: return "int8";
    case at::kShort: return "int16";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    default: return nullptr;
  }
}

// That numpy dtype (borrowed, made once), else null.
inline PyObject* numpy_dtype(at::ScalarType s) {
  const char* name = numpy_name(s);
  if (name == nullptr) return nullptr;
  // (leaked on purpose: it holds Python objects past the interpreter's end)
  static auto& dtypes = *new std::unordered_map<int, py::object>();
  auto it = dtypes.find(static_cast<int>(s));
  if (it == dtypes.end()) {
    it = dtypes.emplace(static_cast<int>(s), py::dtype(name)).first;
  }
  return it->second.ptr();
}

// New instances of a recording dataclass (TensorData, ForwardEvent, BackwardEvent) as its
// __init__ makes them, without running it: object.__new__(cls), then each field set in the order
// of the class's fields (the order __init__ sets them, so the instances share their attribute
// layout with those __init__ makes: the same memory per instance). Only where `cls` is a class
// whose fields (dataclasses.fields) are the ones named here and that has no __new__,
// __setattr__ or __post_init__ of its own; else the class is called with the same values.
class Maker {
 public:
  Maker(PyObject* cls, const std::vector<const char*>& fields) : cls_(py::reinterpret_borrow<py::object>(cls)) {
    for (const char* f : fields) {
      PyObject* name = PyUnicode_InternFromString(f);
      if (name == nullptr) throw py::error_already_set();
      names_.push_back(py::reinterpret_steal<py::object>(name));
    }
    empty_ = py::reinterpret_steal<py::object>(PyTuple_New(0));
    if (!empty_) throw py::error_already_set();
    if (!PyType_Check(cls)) return;
    auto* type = reinterpret_cast<PyTypeObject*>(cls);
    if (type->tp_new != PyBaseObject_Type.tp_new || type->tp_setattro != PyObject_GenericSetAttr ||
        PyObject_HasAttrString(cls, "__post_init__")) {
      return;
    }
    py::object names = py::module_::import("dataclasses").attr("fields")(py::handle(cls));
    py::list want;
    for (const auto& n : names_) want.append(n);
    py::list have;
    for (py::handle f : names) have.append(f.attr("name"));
    direct_ = have.equal(want);
  }

  bool is(PyObject* cls) const { return cls == cls_.ptr(); }

  // Whether instances are made directly (else by calling the class).
  bool direct() const { return direct_; }

  size_t size() const { return names_.size(); }

  // A new instance with values[k] for field k (borrowed references, one per field); a new
  // reference.
  PyObject* make(PyObject* const* values) const {
    if (!direct_) {
      PyObject* out = PyObject_Vectorcall(cls_.ptr(), values, names_.size(), nullptr);
      if (out == nullptr) throw py::error_already_set();
      return out;
    }
    auto* type = reinterpret_cast<PyTypeObject*>(cls_.ptr());
    PyObject* out = type->tp_new(type, empty_.ptr(), nullptr);
    if (out == nullptr) throw py::error_already_set();
    for (size_t k = 0; k < names_.size(); ++k) {
      if (PyObject_GenericSetAttr(out, names_[k].ptr(), values[k]) < 0) {
        Py_DECREF(out);
        throw py::error_already_set();
      }
    }
    return out;
  }

  // Sets field k of an instance (as `obj.field = value`).
  void set(PyObject* obj, size_t k, PyObject* value) const {
    if (PyObject_SetAttr(obj, names_[k].ptr(), value) < 0) throw py::error_already_set();
  }

 private:
  py::object cls_;
  bool direct_ = false;
  std::vector<py::object> names_;
  py::object empty_;
};

// The Maker of class `cls` with these fields (made once per class, kept: the class is held; a
// class always comes with the same fields).
inline const Maker& maker_of(PyObject* cls, const std::vector<const char*>& fields) {
  // (leaked on purpose: it holds Python objects past the interpreter's end)
  static auto& makers = *new std::vector<std::unique_ptr<Maker>>();
  for (const auto& m : makers) {
    if (m->is(cls)) {
      TORCH_CHECK(m->size() == fields.size(), "maker_of: a class with ", m->size(), " fields, and now ", fields.size());
      return *m;
    }
  }
  makers.push_back(std::make_unique<Maker>(cls, fields));
  return *makers.back();
}

// The Maker of TensorData (gradviz/core/tensors.py).
inline const Maker& data_maker(PyObject* cls) {
  return maker_of(cls, {"shape", "dtype", "device", "value", "stats", "requires_grad", "uid"});
}

// One tuple of Python ints per distinct shape, shared by the snapshots of that shape.
class Shapes {
 public:
  PyObject* get(c10::IntArrayRef sizes) {  // (borrowed)
    key_.assign(sizes.begin(), sizes.end());
    auto it = tuples_.find(key_);
    if (it == tuples_.end()) {
      py::tuple t(sizes.size());
      for (size_t i = 0; i < sizes.size(); ++i) {
        PyObject* v = PyLong_FromLongLong(sizes[i]);
        if (v == nullptr) throw py::error_already_set();
        PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i), v);
      }
      it = tuples_.emplace(key_, std::move(t)).first;
    }
    return it->second.ptr();
  }

 private:
  std::vector<int64_t> key_;
  std::map<std::vector<int64_t>, py::object> tuples_;
};

// The name of a device as TensorData holds it ("cpu", "cuda:0"), one str per device.
class Devices {
 public:
  PyObject* get(const c10::Device& d) {  // (borrowed)
    std::string name = d.is_cpu() ? std::string("cpu") : d.str();
    auto it = names_.find(name);
    if (it == names_.end()) it = names_.emplace(name, py::str(name)).first;
    return it->second.ptr();
  }

 private:
  std::unordered_map<std::string, py::object> names_;
};

// Whether none of the n floating values at `data` (IEEE, `Bits` wide) is infinite or NaN: those
// are the values whose exponent bits `exp` are all ones. Tested a block at a time without a
// branch per value (the compiler makes it a vector loop).
template <typename Bits, Bits exp>
bool finite_bits(const void* data, int64_t n) {
  const char* p = static_cast<const char*>(data);
  constexpr int64_t kBlock = 256;
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    Bits block[kBlock];
    std::memcpy(block, p + i * sizeof(Bits), sizeof(block));
    Bits bad = 0;
    for (int64_t k = 0; k < kBlock; ++k) bad |= static_cast<Bits>((block[k] & exp) == exp);
    if (bad) return false;
  }
  for (; i < n; ++i) {
    Bits b;
    std::memcpy(&b, p + i * sizeof(Bits), sizeof(Bits));
    if ((b & exp) == exp) return false;
  }
  return true;
}

// Whether a tensor's attributes can be read from C++: a plain Tensor or a Parameter (any other
// class may answer them itself, through its __torch_function__).
inline bool plain_class(PyObject* t) {
  // (leaked on purpose: a Python object past the interpreter's end)
  static PyObject* parameter = py::object(py::module_::import("torch.nn").attr("Parameter")).release().ptr();
  return THPVariable_CheckExact(t) || Py_TYPE(t) == reinterpret_cast<PyTypeObject*>(parameter);
}

}  // namespace gradviz_record
