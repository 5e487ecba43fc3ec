// The forward capture's common case in C: ForwardCapture.__torch_function__ for the calls that
// are no event of the recording, without a Python frame per call.
//
// Part of the recorder's helper (record_hooks.cpp holds the module; gradviz/core/fastpath.py builds
// every file into it). gradviz/core/capture.py's ForwardCapture.__torch_function__ sees every torch
// call of the model's forward (8,516 on an RNN cell unrolled 1,700 steps); most of them are no
// event (dim(), size(), ops under no_grad, ops whose result is a leaf: 1,702 are). `capture_method`
// gives a function, to be bound as the capture's `__torch_function__`, that does what the Python
// method does, in the same order, and calls back into Python only where the Python method would
// do more than call the op:
//   - `_depth` (the capture's attribute, which the Python parts raise and lower) set: call the op;
//   - the function's facts (name, in place, the event's (op, in place) or None) from the
//     capture's `_FACTS` dict, filled by `_tf_facts(func)` the first time a function is seen;
//   - an in-place op under grad mode: the whole Python method (`_tf_python`), which notes the
//     nodes before the op, but where every tensor of its arguments is a plain Tensor or Parameter
//     that is a leaf and no view (nn.init filling a parameter): then nothing to note before it,
//     and after it `_note_inplace` only where one of them got a node, then as below, but for the
//     event (no record_events.cpp: `_tf_after`);
//   - else `_depth` raised around the op, as in Python; then grad mode off, a result that is no
//     tensor, tuple, list or dict, or a plain torch.Tensor or Parameter that is a leaf (no
//     grad_fn: the test of Tensor.is_leaf): the result; a plain torch.Tensor with a grad_fn from a function whose
//     facts carry an event, or a tuple or list (split's results) from one: logged by
//     record_events.cpp where it takes the op; anything else goes
//     to `_tf_after(func, name, args, kwargs, out)`, the rest of the Python method.
// torch calls a mode's __torch_function__ with the mode taken off the stack, so the op called here
// does not come back to it.
#include <torch/extension.h>

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/python_variable.h>

#include <vector>

#include "record_objects.h"

namespace py = pybind11;

PyObject* gradviz_log_event(PyObject* self, PyObject* log, PyObject* args, PyObject* kwargs, PyObject* out);
extern PyObject* gradviz_not_handled;

namespace {

using gradviz_record::plain_class;

PyObject* s_depth = nullptr;
PyObject* s_facts = nullptr;
PyObject* s_tf_facts = nullptr;
PyObject* s_tf_python = nullptr;
PyObject* s_tf_after = nullptr;
PyObject* s_note_inplace = nullptr;
PyObject* empty_tuple = nullptr;

// The capture's `_depth` (a Python int), or -1 with an error set. Read from the instance's dict,
// where getattr finds it (the class has no data descriptor of that name), else by getattr.
long get_depth(PyObject* self) {
  PyObject** dict = _PyObject_GetDictPtr(self);
  if (dict != nullptr && *dict != nullptr) {
    PyObject* d = PyDict_GetItemWithError(*dict, s_depth);  // (borrowed)
    if (d != nullptr) {
      return PyLong_AsLong(d);
    }
    if (PyErr_Occurred()) {
      return -1;
    }
  }
  PyObject* d = PyObject_GetAttr(self, s_depth);
  if (d == nullptr) {
    return -1;
  }
  long v = PyLong_AsLong(d);
  Py_DECREF(d);
  return v;
}

// Sets `_depth` (into the instance's dict, where setattr puts it).
int set_depth(PyObject* self, long v) {
  PyObject* d = PyLong_FromLong(v);
  if (d == nullptr) {
    return -1;
  }
  PyObject** dict = _PyObject_GetDictPtr(self);
  int rc = dict != nullptr && *dict != nullptr ? PyDict_SetItem(*dict, s_depth, d) : PyObject_SetAttr(self, s_depth, d);
  Py_DECREF(d);
  return rc;
}

// Calls `self.<name>(*a)` (a Python method of the capture).
PyObject* call_method(PyObject* self, PyObject* name, std::initializer_list<PyObject*> a) {
  PyObject* argv[7];
  argv[0] = self;
  size_t n = 1;
  for (PyObject* x : a) {
    argv[n++] = x;
  }
  return PyObject_VectorcallMethod(name, argv, n | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
}

// Whether this tensor is one the in-place path takes: a plain Tensor or Parameter (whose
// attributes no __torch_function__ of its own intercepts) with no grad_fn that is no view, so
// _nodes_before would note it as (t, None) and nothing for a base.
bool plain_leaf(PyObject* v) {
  if (!plain_class(v)) return false;
  const at::Tensor& t = THPVariable_Unpack(v);
  return !t.grad_fn() && !t.is_view();
}

// The tensors of an in-place op's arguments as tensors_in(args) + tensors_in(kwargs) lists them,
// into `out`, where each is a `plain_leaf` and no argument is a dict or nested deeper than one
// list or tuple (else false: the Python method takes the op).
bool plain_leaves(PyObject* args, PyObject* kwargs, std::vector<PyObject*>& out) {
  auto add = [&](PyObject* o) -> bool {
    if (THPVariable_Check(o)) {
      if (!plain_leaf(o)) return false;
      out.push_back(o);
      return true;
    }
    if (PyDict_Check(o)) return false;
    if (PyTuple_Check(o) || PyList_Check(o)) {
      const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
      PyObject** items = PySequence_Fast_ITEMS(o);
      for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* item = items[i];
        if (THPVariable_Check(item)) {
          if (!plain_leaf(item)) return false;
          out.push_back(item);
        } else if (PyDict_Check(item) || PyTuple_Check(item) || PyList_Check(item)) {
          return false;
        }
      }
    }
    return true;
  };
  const Py_ssize_t nargs = PyTuple_GET_SIZE(args);
  for (Py_ssize_t i = 0; i < nargs; ++i) {
    if (!add(PyTuple_GET_ITEM(args, i))) return false;
  }
  if (kwargs != nullptr) {
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kwargs, &pos, &k, &v)) {
      if (!add(v)) return false;
    }
  }
  return true;
}

// _note_inplace(before) for `leaves` (each noted as (t, None) before the op): where one of them
// has a node now, the Python method is called with that list. 0, or -1 with an error set.
int note_inplace(PyObject* self, const std::vector<PyObject*>& leaves) {
  bool changed = false;
  for (PyObject* t : leaves) changed = changed || static_cast<bool>(THPVariable_Unpack(t).grad_fn());
  if (!changed) return 0;  // (made would be empty: nothing noted)
  PyObject* before = PyList_New(static_cast<Py_ssize_t>(leaves.size()));
  if (before == nullptr) return -1;
  for (size_t i = 0; i < leaves.size(); ++i) {
    PyObject* pair = PyTuple_Pack(2, leaves[i], Py_None);
    if (pair == nullptr) {
      Py_DECREF(before);
      return -1;
    }
    PyList_SET_ITEM(before, static_cast<Py_ssize_t>(i), pair);
  }
  PyObject* r = call_method(self, s_note_inplace, {before});
  Py_DECREF(before);
  if (r == nullptr) return -1;
  Py_DECREF(r);
  return 0;
}

// __torch_function__(self, func, types, args=(), kwargs=None)
PyObject* capture_tf(PyObject* /*unused*/, PyObject* const* a, Py_ssize_t n) {
  if (n < 3 || n > 5) {
    PyErr_SetString(PyExc_TypeError, "gradviz: __torch_function__(self, func, types, args=(), kwargs=None)");
    return nullptr;
  }
  PyObject* self = a[0];
  PyObject* func = a[1];
  PyObject* types = a[2];
  PyObject* args = n > 3 ? a[3] : empty_tuple;
  PyObject* kwargs = n > 4 && a[4] != Py_None ? a[4] : nullptr;
  if (!PyTuple_Check(args)) {  // (torch passes a tuple; anything else: the Python method)
    return call_method(self, s_tf_python, {func, types, args, kwargs ? kwargs : Py_None});
  }
  long depth = get_depth(self);
  if (depth < 0) {
    return nullptr;
  }
  if (depth) {
    return PyObject_Call(func, args, kwargs);
  }
  // the function's facts: (name, in place), computed once in Python
  PyObject* facts_dict = PyObject_GetAttr(self, s_facts);
  if (facts_dict == nullptr) {
    return nullptr;
  }
  PyObject* facts = PyDict_GetItemWithError(facts_dict, func);  // borrowed
  Py_XINCREF(facts);
  Py_DECREF(facts_dict);
  if (facts == nullptr) {
    if (PyErr_Occurred()) {
      return nullptr;
    }
    facts = call_method(self, s_tf_facts, {func});
    if (facts == nullptr) {
      return nullptr;
    }
  }
  if (!PyTuple_Check(facts) || PyTuple_GET_SIZE(facts) != 3) {
    Py_DECREF(facts);
    PyErr_SetString(PyExc_TypeError, "gradviz: _tf_facts must give (name, in place, event)");
    return nullptr;
  }
  PyObject* name = PyTuple_GET_ITEM(facts, 0);
  const bool inplace = PyTuple_GET_ITEM(facts, 1) == Py_True;
  // an in-place op under grad mode on tensors that are all leaves and no views (what the nn.init
  // functions do to parameters as a model is built): here; any other, the whole Python method
  std::vector<PyObject*> leaves;
  const bool inplace_here = inplace && at::GradMode::is_enabled();
  if (inplace_here && !plain_leaves(args, kwargs, leaves)) {
    Py_DECREF(facts);
    return call_method(self, s_tf_python, {func, types, args, kwargs ? kwargs : Py_None});
  }
  // what the op runs inside is part of this one event (the Python parts look at _depth)
  if (set_depth(self, depth + 1) < 0) {
    Py_DECREF(facts);
    return nullptr;
  }
  PyObject* out = PyObject_Call(func, args, kwargs);
  {
    // lowered like Python's `finally: self._depth -= 1`, keeping an error of the op's
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    long now = get_depth(self);
    if (now < 0 || set_depth(self, now - 1) < 0) {
      if (et != nullptr) {
        PyErr_Clear();
        PyErr_Restore(et, ev, tb);
      } else {
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
      }
      Py_XDECREF(out);
      Py_DECREF(facts);
      return nullptr;
    }
    PyErr_Restore(et, ev, tb);
  }
  if (out == nullptr || !at::GradMode::is_enabled()) {
    Py_DECREF(facts);
    return out;
  }
  if (inplace_here && note_inplace(self, leaves) < 0) {
    Py_DECREF(facts);
    Py_DECREF(out);
    return nullptr;
  }
  bool after;
  // (a Parameter result, like nn.init's: a Tensor whose is_leaf is the same test)
  if (plain_class(out)) {
    after = static_cast<bool>(THPVariable_Unpack(out).grad_fn());  // not a leaf
    PyObject* log = PyTuple_GET_ITEM(facts, 2);
    if (after && log != Py_None && !inplace_here) {
      // the common event, logged in C (record_events.cpp), or left to _tf_after
      PyObject* done = gradviz_log_event(self, log, args, kwargs, out);
      if (done != gradviz_not_handled) {
        Py_DECREF(out);
        Py_DECREF(facts);
        return done;
      }
    }
  } else {
    after = THPVariable_Check(out) || PyTuple_Check(out) || PyList_Check(out) || PyDict_Check(out);
    PyObject* log = PyTuple_GET_ITEM(facts, 2);
    if ((PyTuple_CheckExact(out) || PyList_CheckExact(out)) && log != Py_None && !inplace_here) {
      // a tuple or list of results (split, max with its indices): logged in C too where it takes them
      PyObject* done = gradviz_log_event(self, log, args, kwargs, out);
      if (done != gradviz_not_handled) {
        Py_DECREF(out);
        Py_DECREF(facts);
        return done;
      }
    }
  }
  if (!after) {
    Py_DECREF(facts);
    return out;
  }
  PyObject* kw = kwargs;
  if (kw == nullptr) {
    kw = PyDict_New();
    if (kw == nullptr) {
      Py_DECREF(facts);
      Py_DECREF(out);
      return nullptr;
    }
  } else {
    Py_INCREF(kw);
  }
  PyObject* result = call_method(self, s_tf_after, {func, name, args, kw, out});
  Py_DECREF(kw);
  Py_DECREF(out);
  Py_DECREF(facts);
  return result;
}

PyMethodDef capture_def = {"capture_torch_function", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(capture_tf)),
                           METH_FASTCALL, "ForwardCapture.__torch_function__'s common case in C"};

// The function above as an instance method: set as a class's __torch_function__, it is bound to
// the instance like a Python method.
py::object capture_method() {
  PyObject* fn = PyCFunction_New(&capture_def, nullptr);
  if (fn == nullptr) {
    throw py::error_already_set();
  }
  PyObject* method = PyInstanceMethod_New(fn);
  Py_DECREF(fn);
  if (method == nullptr) {
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(method);
}

}  // namespace

// Adds capture_method() and `CAPTURE` to the helper's module.
void gradviz_add_capture(py::module_& m) {
  s_depth = PyUnicode_InternFromString("_depth");
  s_facts = PyUnicode_InternFromString("_FACTS");
  s_tf_facts = PyUnicode_InternFromString("_tf_facts");
  s_tf_python = PyUnicode_InternFromString("_tf_python");
  s_tf_after = PyUnicode_InternFromString("_tf_after");
  s_note_inplace = PyUnicode_InternFromString("_note_inplace");
  empty_tuple = PyTuple_New(0);
  m.attr("CAPTURE") = true;
  m.def("capture_method", &capture_method);
}
