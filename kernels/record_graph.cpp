// The recorder's passes over the walked graph, each one call instead of a Python loop per node.
//
// Part of the recorder's helper (record_hooks.cpp holds the module; gradviz/core/fastpath.py builds
// the files into it). Each function gives exactly what the Python code it stands in for gives:
//   order(count, edges)               (recorder.producers_of(count, edges),
//                                      recorder.topological_order(count, edges)): each node's
//                                      producers, one per edge in edge order, and Kahn's order with
//                                      ties by the smallest id
//   explained(inputs_of, fn_ids, ops) the flags capture.ForwardCapture.unseen_nodes sets: per op
//                                      (nodes made, nodes consumed) in order, every node reached from
//                                      the made ones through `inputs_of`, stopping at the consumed
//                                      ones and at nodes flagged before
//   grad_fns(event_tensors)           capture.ForwardCapture.graph_roots' tensor part: the grad_fn of
//                                      every input, then every output, of each event that is no leaf
//   settle_events(topo, inputs_of,    recorder._annotate_nodes' passing on of forward events to the
//                 event_of, fixed)     nodes made inside a composite op (see settle_events)
//   input_refs(events, event_tensors, recorder._input_nodes' loop over the events' inputs, leaving
//              fn_ids, leaf_ids)       to Python only the inputs that get a node of their own
//   unnamed_inputs(event_tensors,     naming.name_tensors' scan for the inputs it names inputN
//                  named)
#include <torch/extension.h>

#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/autograd/python_cpp_function.h>

#include "record_objects.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <unordered_set>
#include <vector>

namespace py = pybind11;

namespace {

using gradviz_record::plain_class;

// An index in [0, count) from a Python int (IndexError past it, as a Python list would raise).
Py_ssize_t index_of(PyObject* v, Py_ssize_t count) {
  const Py_ssize_t i = PyLong_AsSsize_t(v);
  if (i == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (i < 0 || i >= count) throw py::index_error("gradviz: a node index out of range");
  return i;
}

PyObject* new_int(Py_ssize_t i) {
  PyObject* v = PyLong_FromSsize_t(i);
  if (v == nullptr) throw py::error_already_set();
  return v;
}

// Each node's producers as a list of lists, and a topological order (every consumer before its
// producers; of the ready nodes the smallest id first), from the edges (consumer, producer, slot).
py::tuple order(Py_ssize_t count, py::list edges) {
  const Py_ssize_t m = PyList_GET_SIZE(edges.ptr());
  std::vector<Py_ssize_t> src(m), dst(m);
  std::vector<Py_ssize_t> start(count + 1, 0);  // CSR: node i's producers are to[start[i]:start[i+1]]
  std::vector<Py_ssize_t> indeg(count, 0);
  for (Py_ssize_t e = 0; e < m; ++e) {
    PyObject* edge = PyList_GET_ITEM(edges.ptr(), e);
    if (!PyTuple_Check(edge) || PyTuple_GET_SIZE(edge) < 2) throw py::type_error("gradviz: an edge is not a tuple");
    src[e] = index_of(PyTuple_GET_ITEM(edge, 0), count);
    dst[e] = index_of(PyTuple_GET_ITEM(edge, 1), count);
    start[src[e] + 1] += 1;
    indeg[dst[e]] += 1;
  }
  for (Py_ssize_t i = 0; i < count; ++i) start[i + 1] += start[i];
  std::vector<Py_ssize_t> to(m), fill(start.begin(), start.end() - 1);
  for (Py_ssize_t e = 0; e < m; ++e) to[fill[src[e]]++] = dst[e];  // (in edge order: slot order)

  py::list inputs_of(count);
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* row = PyList_New(start[i + 1] - start[i]);
    if (row == nullptr) throw py::error_already_set();
    PyList_SET_ITEM(inputs_of.ptr(), i, row);  // (the list owns it from here)
    for (Py_ssize_t k = start[i]; k < start[i + 1]; ++k) {
      PyList_SET_ITEM(row, k - start[i], new_int(to[k]));
    }
  }
  // Kahn's algorithm; the heap hands out the smallest ready id, as heapq does in Python
  std::priority_queue<Py_ssize_t, std::vector<Py_ssize_t>, std::greater<Py_ssize_t>> ready;
  for (Py_ssize_t i = 0; i < count; ++i) {
    if (indeg[i] == 0) ready.push(i);
  }
  py::list topo;
  while (!ready.empty()) {
    const Py_ssize_t i = ready.top();
    ready.pop();
    py::object v = py::reinterpret_steal<py::object>(new_int(i));
    if (PyList_Append(topo.ptr(), v.ptr()) < 0) throw py::error_already_set();
    for (Py_ssize_t k = start[i]; k < start[i + 1]; ++k) {
      if (--indeg[to[k]] == 0) ready.push(to[k]);
    }
  }
  return py::make_tuple(inputs_of, topo);
}

// The index of `fn` in fn_ids, or -1 when it is not a key.
Py_ssize_t lookup(PyObject* fn_ids, PyObject* fn, Py_ssize_t count) {
  PyObject* i = PyDict_GetItemWithError(fn_ids, fn);  // (borrowed)
  if (i == nullptr) {
    if (PyErr_Occurred()) throw py::error_already_set();
    return -1;
  }
  return index_of(i, count);
}

// One flag per node (a bytearray): whether a seen op made it (see the top of the file).
py::bytearray explained(py::list inputs_of, py::dict fn_ids, py::list ops) {
  const Py_ssize_t count = PyList_GET_SIZE(inputs_of.ptr());
  std::vector<char> flag(count, 0);
  std::vector<char> stop(count, 0);
  std::vector<Py_ssize_t> stops, stack;
  const Py_ssize_t n_ops = PyList_GET_SIZE(ops.ptr());
  for (Py_ssize_t o = 0; o < n_ops; ++o) {
    PyObject* op = PyList_GET_ITEM(ops.ptr(), o);
    if (!PyTuple_Check(op) || PyTuple_GET_SIZE(op) != 2) throw py::type_error("gradviz: a seen op is not a pair");
    py::object made = py::reinterpret_steal<py::object>(PySequence_Fast(PyTuple_GET_ITEM(op, 0), "made"));
    py::object consumed = py::reinterpret_steal<py::object>(PySequence_Fast(PyTuple_GET_ITEM(op, 1), "consumed"));
    if (!made || !consumed) throw py::error_already_set();
    stops.clear();
    const Py_ssize_t n_consumed = PySequence_Fast_GET_SIZE(consumed.ptr());
    for (Py_ssize_t k = 0; k < n_consumed; ++k) {
      const Py_ssize_t i = lookup(fn_ids.ptr(), PySequence_Fast_GET_ITEM(consumed.ptr(), k), count);
      if (i >= 0) {
        stop[i] = 1;
        stops.push_back(i);
      }
    }
    stack.clear();
    const Py_ssize_t n_made = PySequence_Fast_GET_SIZE(made.ptr());
    for (Py_ssize_t k = 0; k < n_made; ++k) {
      const Py_ssize_t i = lookup(fn_ids.ptr(), PySequence_Fast_GET_ITEM(made.ptr(), k), count);
      if (i >= 0) stack.push_back(i);
    }
    while (!stack.empty()) {
      const Py_ssize_t i = stack.back();
      stack.pop_back();
      if (flag[i] || stop[i]) continue;
      flag[i] = 1;
      PyObject* row = PyList_GET_ITEM(inputs_of.ptr(), i);
      if (!PyList_Check(row)) throw py::type_error("gradviz: inputs_of holds a non-list");
      const Py_ssize_t n = PyList_GET_SIZE(row);
      for (Py_ssize_t k = 0; k < n; ++k) {
        const Py_ssize_t j = index_of(PyList_GET_ITEM(row, k), count);
        if (!flag[j]) stack.push_back(j);
      }
    }
    for (Py_ssize_t i : stops) stop[i] = 0;
  }
  return py::bytearray(flag.data(), flag.size());
}

// Each node's forward event, settled as recorder._annotate_nodes settles it: going through `topo`
// (every consumer before its producers), a node with an event passes it on to each producer that is
// neither a leaf nor the output node of its own event (`fixed`), where that producer has none yet
// or a later one. `event_of` (ints and Nones) is changed in place.
void settle_events(py::list topo, py::list inputs_of, py::list event_of, py::bytes fixed_flags) {
  const Py_ssize_t count = PyList_GET_SIZE(event_of.ptr());
  if (PyList_GET_SIZE(inputs_of.ptr()) != count || PyBytes_GET_SIZE(fixed_flags.ptr()) != count) {
    throw py::value_error("gradviz: settle_events needs one entry per node");
  }
  const char* fixed = PyBytes_AS_STRING(fixed_flags.ptr());
  // the events as numbers (-1: none), written back where they changed
  std::vector<Py_ssize_t> ev(count, -1);
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* v = PyList_GET_ITEM(event_of.ptr(), i);
    if (v != Py_None) {
      ev[i] = PyLong_AsSsize_t(v);
      if (ev[i] == -1 && PyErr_Occurred()) throw py::error_already_set();
      if (ev[i] < 0) throw py::value_error("gradviz: a negative event index");
    }
  }
  std::vector<char> changed(count, 0);
  const Py_ssize_t n = PyList_GET_SIZE(topo.ptr());
  for (Py_ssize_t k = 0; k < n; ++k) {
    const Py_ssize_t i = index_of(PyList_GET_ITEM(topo.ptr(), k), count);
    const Py_ssize_t e = ev[i];
    if (e < 0 || (fixed[i] & 1)) continue;  // (bit 1: a leaf, which passes nothing on)
    PyObject* row = PyList_GET_ITEM(inputs_of.ptr(), i);
    if (!PyList_Check(row)) throw py::type_error("gradviz: inputs_of holds a non-list");
    const Py_ssize_t m = PyList_GET_SIZE(row);
    for (Py_ssize_t r = 0; r < m; ++r) {
      const Py_ssize_t j = index_of(PyList_GET_ITEM(row, r), count);
      if (fixed[j]) continue;
      if (ev[j] < 0 || e < ev[j]) {
        ev[j] = e;
        changed[j] = 1;
      }
    }
  }
  for (Py_ssize_t i = 0; i < count; ++i) {
    if (!changed[i]) continue;
    PyObject* v = new_int(ev[i]);
    PyObject* old = PyList_GET_ITEM(event_of.ptr(), i);
    PyList_SET_ITEM(event_of.ptr(), i, v);
    Py_DECREF(old);
  }
}

// t.grad_fn (a new reference; None for none).
py::object grad_fn_of(PyObject* t) {
  if (plain_class(t)) {
    const auto& fn = THPVariable_Unpack(t).grad_fn();
    if (!fn) return py::none();
    py::object f = py::reinterpret_steal<py::object>(torch::autograd::functionToPyObject(fn));
    if (!f) throw py::error_already_set();
    return f;
  }
  return py::handle(t).attr("grad_fn");
}

bool requires_grad_of(PyObject* t) {
  if (plain_class(t)) return THPVariable_Unpack(t).requires_grad();
  return py::handle(t).attr("requires_grad").cast<bool>();
}

// dict.get(key) (a new reference; None for a missing key).
py::object get(PyObject* dict, PyObject* key) {
  PyObject* v = PyDict_GetItemWithError(dict, key);  // (borrowed)
  if (v == nullptr) {
    if (PyErr_Occurred()) throw py::error_already_set();
    return py::none();
  }
  return py::reinterpret_borrow<py::object>(v);
}

py::object id_of(PyObject* v) {
  PyObject* id = PyLong_FromVoidPtr(v);
  if (id == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(id);
}

// Fast sequence items of one side of an event's (inputs, outputs) pair (any sequence of two).
py::object side(PyObject* pair, Py_ssize_t k) {
  py::object both = py::reinterpret_steal<py::object>(PySequence_Fast(pair, "an event's tensors"));
  if (!both) throw py::error_already_set();
  if (PySequence_Fast_GET_SIZE(both.ptr()) != 2) throw py::type_error("gradviz: an event's tensors are not a pair");
  py::object seq = py::reinterpret_steal<py::object>(
      PySequence_Fast(PySequence_Fast_GET_ITEM(both.ptr(), k), "tensors"));
  if (!seq) throw py::error_already_set();
  return seq;
}

// recorder._input_nodes' loop over the events, but for the inputs that need a node of their own:
// sets each event's input_nodes (per input: its grad_fn's node id, else the leaf's node id where it
// requires grad, else None) and returns (event index, input position, the op's node id) for each
// input that needs no grad where the op's output has a node of the graph, with the input itself
// (the caller gives those their node and fills their place in input_nodes).
py::list input_refs(py::list events, py::list event_tensors, py::dict fn_ids, py::dict leaf_ids) {
  static PyObject* name = PyUnicode_InternFromString("input_nodes");
  const Py_ssize_t n = std::min(PyList_GET_SIZE(events.ptr()), PyList_GET_SIZE(event_tensors.ptr()));
  py::list pending;
  for (Py_ssize_t e = 0; e < n; ++e) {
    PyObject* pair = PyList_GET_ITEM(event_tensors.ptr(), e);
    py::object ins = side(pair, 0), outs = side(pair, 1);
    py::object fn = py::none();
    const Py_ssize_t n_out = PySequence_Fast_GET_SIZE(outs.ptr());
    for (Py_ssize_t k = 0; k < n_out; ++k) {
      fn = grad_fn_of(PySequence_Fast_GET_ITEM(outs.ptr(), k));
      if (!fn.is_none()) break;
    }
    py::object op_id = fn.is_none() ? py::none() : get(fn_ids.ptr(), fn.ptr());
    const Py_ssize_t n_in = PySequence_Fast_GET_SIZE(ins.ptr());
    py::list found(n_in);
    for (Py_ssize_t k = 0; k < n_in; ++k) {
      PyObject* t = PySequence_Fast_GET_ITEM(ins.ptr(), k);
      py::object got;
      py::object g = grad_fn_of(t);
      if (!g.is_none()) {
        got = get(fn_ids.ptr(), g.ptr());
      } else if (requires_grad_of(t)) {
        got = get(leaf_ids.ptr(), id_of(t).ptr());
      } else {
        got = py::none();
        if (!op_id.is_none()) pending.append(py::make_tuple(e, k, op_id, py::handle(t)));
      }
      PyList_SET_ITEM(found.ptr(), k, got.release().ptr());
    }
    if (PyObject_SetAttr(PyList_GET_ITEM(events.ptr(), e), name, found.ptr()) < 0) throw py::error_already_set();
  }
  return pending;
}

// Whether t.grad_fn is not None (no Python object made for it where `t` is a plain tensor).
bool has_grad_fn(PyObject* t) {
  if (plain_class(t)) return static_cast<bool>(THPVariable_Unpack(t).grad_fn());
  return !py::handle(t).attr("grad_fn").is_none();
}

// The ints of a set or a dict's keys (ids of Python objects) as the pointers they stand for.
std::unordered_set<const void*> pointers_of(PyObject* ids) {
  std::unordered_set<const void*> out;
  py::object it = py::reinterpret_steal<py::object>(PyObject_GetIter(ids));
  if (!it) throw py::error_already_set();
  while (PyObject* id = PyIter_Next(it.ptr())) {
    py::object held = py::reinterpret_steal<py::object>(id);
    void* p = PyLong_AsVoidPtr(id);
    if (p == nullptr && PyErr_Occurred()) throw py::error_already_set();
    out.insert(p);
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  return out;
}

// naming.name_tensors' scan of the events' inputs: each input without a grad_fn whose id is not in
// `named` yet, in order of first use (its id added to `named`). The ids are looked up as pointers
// (no int made per input): `named` holds ids of tensors that live on meanwhile, and so do the inputs.
py::list unnamed_inputs(py::list event_tensors, py::set named) {
  py::list out;
  std::unordered_set<const void*> seen = pointers_of(named.ptr());
  const Py_ssize_t n = PyList_GET_SIZE(event_tensors.ptr());
  for (Py_ssize_t e = 0; e < n; ++e) {
    py::object ins = side(PyList_GET_ITEM(event_tensors.ptr(), e), 0);
    const Py_ssize_t n_in = PySequence_Fast_GET_SIZE(ins.ptr());
    for (Py_ssize_t k = 0; k < n_in; ++k) {
      PyObject* t = PySequence_Fast_GET_ITEM(ins.ptr(), k);
      if (has_grad_fn(t) || !seen.insert(t).second) continue;
      if (PySet_Add(named.ptr(), id_of(t).ptr()) < 0 || PyList_Append(out.ptr(), t) < 0) throw py::error_already_set();
    }
  }
  return out;
}

// Appends t.grad_fn for each tensor of `tensors` that is no leaf.
void add_grad_fns(PyObject* tensors, py::list& out) {
  py::object seq = py::reinterpret_steal<py::object>(PySequence_Fast(tensors, "tensors"));
  if (!seq) throw py::error_already_set();
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
  for (Py_ssize_t k = 0; k < n; ++k) {
    PyObject* t = PySequence_Fast_GET_ITEM(seq.ptr(), k);
    if (plain_class(t)) {
      const auto& fn = THPVariable_Unpack(t).grad_fn();
      if (!fn) continue;
      py::object f = py::reinterpret_steal<py::object>(torch::autograd::functionToPyObject(fn));
      if (!f) throw py::error_already_set();
      if (PyList_Append(out.ptr(), f.ptr()) < 0) throw py::error_already_set();
      continue;
    }
    py::handle h(t);
    if (!h.attr("is_leaf").cast<bool>()) out.append(h.attr("grad_fn"));
  }
}

py::list grad_fns(py::list event_tensors) {
  py::list out;
  const Py_ssize_t n = PyList_GET_SIZE(event_tensors.ptr());
  for (Py_ssize_t e = 0; e < n; ++e) {
    PyObject* pair = PyList_GET_ITEM(event_tensors.ptr(), e);
    add_grad_fns(side(pair, 0).ptr(), out);
    add_grad_fns(side(pair, 1).ptr(), out);
  }
  return out;
}

}  // namespace

// Adds the functions above to the helper's module.
void gradviz_add_graph(py::module_& m) {
  m.def("order", &order, py::arg("count"), py::arg("edges"));
  m.def("explained", &explained, py::arg("inputs_of"), py::arg("fn_ids"), py::arg("ops"));
  m.def("grad_fns", &grad_fns, py::arg("event_tensors"));
  m.def("input_refs", &input_refs, py::arg("events"), py::arg("event_tensors"), py::arg("fn_ids"), py::arg("leaf_ids"));
  m.def("unnamed_inputs", &unnamed_inputs, py::arg("event_tensors"), py::arg("named"));
  m.def("settle_events", &settle_events, py::arg("topo"), py::arg("inputs_of"), py::arg("event_of"), py::arg("fixed"));
}
