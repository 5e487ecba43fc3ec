// The sandbox's wrapped Module._call_impl in C: gradviz/core/sandbox.py's `_wrap_call_impl`
// `_call_impl`, without a Python frame (or three: the wrapper, the capture's two module hooks and
// torch's own _call_impl) per module call.
//
// Part of the recorder's helper (record_hooks.cpp holds the module; gradviz/core/fastpath.py builds
// every file into it). `call_impl(original, pre, post, hooked_call, hooked, g, capture)` gives a
// function to set as Module._call_impl (bound to the module like a Python method) that does what
// the Python wrapper does, in the same order:
//   - `hooked[0]` set (a call running now registered the global hooks): `original(self, ...)`;
//   - the module has hooks of its own (_backward_hooks, _backward_pre_hooks, _forward_hooks,
//     _forward_pre_hooks), or a global hook table of torch's module `g` is not empty:
//     `hooked_call(self, ...)`, the Python wrapper's slow path (it registers `pre` and `post` as
//     global hooks for the length of the call);
//   - else `pre(self, args)`, the call, `post(self, args, result)` (nothing after an error). With
//     `capture` (a ForwardCapture whose module hooks are its class's own: `pre` and `post` are its
//     bound methods) the two hooks' bookkeeping is done here (module_uses, module_order,
//     module_parent, module_stack, as on_module_pre and on_module_post do), and the call is
//     torch's fast path itself: `self.forward(...)` (torch's _call_impl with no hook anywhere;
//     `original` while the JIT traces, which calls _slow_forward); without it, `pre`, `original`
//     and `post` are called.
#include <torch/extension.h>

#include <torch/csrc/jit/frontend/tracer.h>

namespace py = pybind11;

namespace {

PyObject* s_backward_hooks = nullptr;
PyObject* s_backward_pre_hooks = nullptr;
PyObject* s_forward_hooks = nullptr;
PyObject* s_forward_pre_hooks = nullptr;
PyObject* s_global[4] = {nullptr, nullptr, nullptr, nullptr};
PyObject* s_forward = nullptr;
PyObject* s_module_uses = nullptr;
PyObject* s_module_order = nullptr;
PyObject* s_module_parent = nullptr;
PyObject* s_module_stack = nullptr;
PyObject* one = nullptr;

enum Slot { ORIGINAL, PRE, POST, HOOKED_CALL, HOOKED, GLOBALS, CAPTURE, SLOTS };

// Whether `obj.<name>` is true (an instance attribute read from the instance's dict, where
// getattr finds a module's hook tables; else by getattr): 1, 0, or -1 with an error set.
int attr_true(PyObject* obj, PyObject* name) {
  PyObject** dict = _PyObject_GetDictPtr(obj);
  if (dict != nullptr && *dict != nullptr) {
    PyObject* v = PyDict_GetItemWithError(*dict, name);  // (borrowed)
    if (v != nullptr) return PyObject_IsTrue(v);
    if (PyErr_Occurred()) return -1;
  }
  PyObject* v = PyObject_GetAttr(obj, name);
  if (v == nullptr) return -1;
  const int yes = PyObject_IsTrue(v);
  Py_DECREF(v);
  return yes;
}

// The capture's attribute `name` if it is of the exact type (a dict or list), else null; a new
// reference (null without an error where it is of another type; null at once while an error is set).
PyObject* exact(PyObject* capture, PyObject* name, bool list) {
  if (PyErr_Occurred()) return nullptr;  // (an earlier read failed)
  PyObject* v = PyObject_GetAttr(capture, name);
  if (v == nullptr) return nullptr;
  if (list ? PyList_CheckExact(v) : PyDict_CheckExact(v)) return v;
  Py_DECREF(v);
  return nullptr;
}

// ForwardCapture.on_module_pre(module, args) on the capture's own dicts and lists: 0, 1 where
// one of them is not an exact dict or list (nothing done: the Python method does it), or -1 with
// an error set.
int track_pre(PyObject* capture, PyObject* module) {
  py::object uses = py::reinterpret_steal<py::object>(exact(capture, s_module_uses, false));
  py::object stack = py::reinterpret_steal<py::object>(exact(capture, s_module_stack, true));
  py::object order = py::reinterpret_steal<py::object>(exact(capture, s_module_order, true));
  py::object parent = py::reinterpret_steal<py::object>(exact(capture, s_module_parent, false));
  if (PyErr_Occurred()) return -1;
  if (!uses || !stack || !order || !parent) return 1;
  // use = self.module_uses.get(module, 0) + 1
  PyObject* before = PyDict_GetItemWithError(uses.ptr(), module);  // (borrowed)
  if (before == nullptr && PyErr_Occurred()) return -1;
  py::object use;
  if (before == nullptr) {
    use = py::reinterpret_borrow<py::object>(one);
    // first use: module_order.append(module); module_parent[module] = the caller (or None)
    if (PyList_Append(order.ptr(), module) < 0) return -1;
    PyObject* caller = Py_None;
    py::object hold;
    const Py_ssize_t depth = PyList_GET_SIZE(stack.ptr());
    if (depth) {
      hold = py::reinterpret_steal<py::object>(PySequence_GetItem(PyList_GET_ITEM(stack.ptr(), depth - 1), 0));
      if (!hold) return -1;
      caller = hold.ptr();
    }
    if (PyDict_SetItem(parent.ptr(), module, caller) < 0) return -1;
  } else {
    use = py::reinterpret_steal<py::object>(PyNumber_Add(before, one));
    if (!use) return -1;
  }
  if (PyDict_SetItem(uses.ptr(), module, use.ptr()) < 0) return -1;
  PyObject* frame = PyTuple_Pack(2, module, use.ptr());
  if (frame == nullptr) return -1;
  const int rc = PyList_Append(stack.ptr(), frame);
  Py_DECREF(frame);
  return rc;
}

// ForwardCapture.on_module_post: pop the module stack back to this module (a module that raised
// may have left frames behind). 0, 1 where the stack is not an exact list (nothing done), or -1
// with an error set.
int track_post(PyObject* capture, PyObject* module) {
  py::object stack = py::reinterpret_steal<py::object>(exact(capture, s_module_stack, true));
  if (!stack) return PyErr_Occurred() ? -1 : 1;
  while (PyList_GET_SIZE(stack.ptr())) {
    const Py_ssize_t n = PyList_GET_SIZE(stack.ptr());
    py::object frame = py::reinterpret_borrow<py::object>(PyList_GET_ITEM(stack.ptr(), n - 1));
    if (PyList_SetSlice(stack.ptr(), n - 1, n, nullptr) < 0) return -1;
    // m, _ = frame
    py::object items = py::reinterpret_steal<py::object>(PySequence_Tuple(frame.ptr()));
    if (!items) return -1;
    if (PyTuple_GET_SIZE(items.ptr()) != 2) {
      PyErr_SetString(PyExc_ValueError, "gradviz: a module stack frame is not (module, use)");
      return -1;
    }
    if (PyTuple_GET_ITEM(items.ptr(), 0) == module) break;
  }
  return 0;
}

// Module._call_impl(self, *args, **kwargs), bound to `state` (the tuple of Slot).
PyObject* call_impl(PyObject* state, PyObject* const* a, size_t nargsf, PyObject* kwnames) {
  const Py_ssize_t n = PyVectorcall_NARGS(nargsf);
  if (n < 1) {
    PyErr_SetString(PyExc_TypeError, "gradviz: Module._call_impl(self, *args, **kwargs)");
    return nullptr;
  }
  PyObject* const original = PyTuple_GET_ITEM(state, ORIGINAL);
  PyObject* const self = a[0];
  // a call running now registered the global hooks: torch's own call, which runs them
  const int hooked = PyObject_IsTrue(PyList_GET_ITEM(PyTuple_GET_ITEM(state, HOOKED), 0));
  if (hooked < 0) return nullptr;
  if (hooked) return PyObject_Vectorcall(original, a, nargsf, kwnames);
  // hooks of the module's own, or global ones (read at each call, as torch's _call_impl reads them)
  int any = 0;
  for (PyObject* name : {s_backward_hooks, s_backward_pre_hooks, s_forward_hooks, s_forward_pre_hooks}) {
    any = attr_true(self, name);
    if (any) break;
  }
  PyObject* const g = PyTuple_GET_ITEM(state, GLOBALS);
  for (int k = 0; k < 4 && !any; ++k) {
    PyObject* table = PyDict_GetItemWithError(g, s_global[k]);  // (borrowed)
    if (table == nullptr) {
      if (!PyErr_Occurred()) PyErr_SetObject(PyExc_AttributeError, s_global[k]);
      return nullptr;
    }
    any = PyObject_IsTrue(table);
  }
  if (any < 0) return nullptr;
  if (any) return PyObject_Vectorcall(PyTuple_GET_ITEM(state, HOOKED_CALL), a, nargsf, kwnames);
  PyObject* const capture = PyTuple_GET_ITEM(state, CAPTURE);
  py::object args;  // (the positional arguments' tuple, made for a Python hook only)
  auto make_args = [&]() -> bool {
    args = py::reinterpret_steal<py::object>(PyTuple_New(n - 1));
    if (!args) return false;
    for (Py_ssize_t i = 1; i < n; ++i) {
      Py_INCREF(a[i]);
      PyTuple_SET_ITEM(args.ptr(), i - 1, a[i]);
    }
    return true;
  };
  // pre(self, args)
  const int pre_done = capture != Py_None ? track_pre(capture, self) : 1;
  if (pre_done < 0) return nullptr;
  if (pre_done) {
    if (!make_args()) return nullptr;
    PyObject* r = PyObject_CallFunctionObjArgs(PyTuple_GET_ITEM(state, PRE), self, args.ptr(), nullptr);
    if (r == nullptr) return nullptr;
    Py_DECREF(r);
  }
  // torch's _call_impl; where the capture's own hooks ran, nothing can have registered a hook
  // since the test above: its fast path, forward_call(*args, **kwargs)
  PyObject* result = capture == Py_None || pre_done || torch::jit::tracer::isTracing()
                         ? PyObject_Vectorcall(original, a, nargsf, kwnames)
                         : PyObject_VectorcallMethod(s_forward, a, static_cast<size_t>(n), kwnames);
  if (result == nullptr) return nullptr;  // (no post after an error)
  // post(self, args, result)
  const int post_done = capture != Py_None ? track_post(capture, self) : 1;
  if (post_done > 0) {
    if (!args && !make_args()) {
      Py_DECREF(result);
      return nullptr;
    }
    PyObject* r = PyObject_CallFunctionObjArgs(PyTuple_GET_ITEM(state, POST), self, args.ptr(), result, nullptr);
    if (r == nullptr) {
      Py_DECREF(result);
      return nullptr;
    }
    Py_DECREF(r);
  } else if (post_done < 0) {
    Py_DECREF(result);
    return nullptr;
  }
  return result;
}

PyMethodDef call_impl_def = {"_call_impl", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(call_impl)),
                             METH_FASTCALL | METH_KEYWORDS,
                             "Module._call_impl with the recorder's module hooks around it (gradviz's sandbox)"};

// The wrapper (see the top of the file), as an instance method: set as Module._call_impl, it is
// bound to the module like a Python method.
py::object make_call_impl(py::object original, py::object pre, py::object post, py::object hooked_call,
                          py::list hooked, py::dict g, py::object capture) {
  if (PyList_GET_SIZE(hooked.ptr()) != 1) throw std::invalid_argument("call_impl: hooked must be a list of one");
  py::tuple state = py::make_tuple(original, pre, post, hooked_call, hooked, g, capture);
  PyObject* fn = PyCFunction_New(&call_impl_def, state.ptr());
  if (fn == nullptr) throw py::error_already_set();
  PyObject* method = PyInstanceMethod_New(fn);
  Py_DECREF(fn);
  if (method == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(method);
}

}  // namespace

// Adds call_impl() and `CALL_IMPL` to the helper's module.
void gradviz_add_modules(py::module_& m) {
  s_backward_hooks = PyUnicode_InternFromString("_backward_hooks");
  s_backward_pre_hooks = PyUnicode_InternFromString("_backward_pre_hooks");
  s_forward_hooks = PyUnicode_InternFromString("_forward_hooks");
  s_forward_pre_hooks = PyUnicode_InternFromString("_forward_pre_hooks");
  // (the order of the Python wrapper's test)
  s_global[0] = PyUnicode_InternFromString("_global_backward_pre_hooks");
  s_global[1] = PyUnicode_InternFromString("_global_backward_hooks");
  s_global[2] = PyUnicode_InternFromString("_global_forward_hooks");
  s_global[3] = PyUnicode_InternFromString("_global_forward_pre_hooks");
  s_forward = PyUnicode_InternFromString("forward");
  s_module_uses = PyUnicode_InternFromString("module_uses");
  s_module_order = PyUnicode_InternFromString("module_order");
  s_module_parent = PyUnicode_InternFromString("module_parent");
  s_module_stack = PyUnicode_InternFromString("module_stack");
  one = PyLong_FromLong(1);
  m.attr("CALL_IMPL") = true;
  m.def("call_impl", &make_call_impl, py::arg("original"), py::arg("pre"), py::arg("post"),
        py::arg("hooked_call"), py::arg("hooked"), py::arg("g"), py::arg("capture"));
}
