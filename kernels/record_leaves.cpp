// The recorder's passes over the leaves after backward, each one call instead of a Python loop per
// leaf or per edge.
//
// Part of the recorder's helper (record_hooks.cpp holds the module; gradviz/core/fastpath.py builds
// the files into it). Each function gives exactly what the Python code it stands in for gives:
//   leaves_shapes_only(leaf_tensors,   recorder._leaves_without_values: per leaf a LeafInfo with its
//       initial, leaf_node_of, store,  tensor's, initial gradient's and .grad's snapshots without
//       data_class, leaf_class)        values, numbered from store._count on as TensorStore.shapes_only
//                                      numbers them; returns (leaves, into), or None where a tensor is
//                                      not a plain leaf (a subclass, a tensor with a grad_fn: Python
//                                      then reads it, with what its attributes do)
//   leaf_contributions(edges,          recorder._collect_leaves' loop over the edges into the leaves'
//       backward, into,                nodes and the backward events: each gradient sent along one of
//       contribution_class, reduce)    them, as a Contribution appended to the leaf's list, in the order
//                                      the producers ran, then by slot
//   grads_finite(tensors)              recorder._check_finite_without_values' test of the leaves'
//                                      floating gradients, read in place where they lie in CPU memory
//                                      without gaps: (whether those are all finite, the positions of
//                                      the floating gradients it could not read so), or None where a
//                                      tensor is not a plain leaf
#include "record_objects.h"

#include <torch/csrc/autograd/python_variable.h>

#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

namespace py = pybind11;

const py::object& gradviz_dtype_name(at::ScalarType s);  // record_saved.cpp

namespace {

using gradviz_record::plain_class;

using gradviz_record::attr;
using gradviz_record::data_maker;
using gradviz_record::Devices;
using gradviz_record::finite_bits;
using gradviz_record::int_attr;
using gradviz_record::int_of;
using gradviz_record::int_value;
using gradviz_record::Maker;
using gradviz_record::maker_of;
using gradviz_record::set_int_attr;
using gradviz_record::Shapes;

// Whether `t` is a plain Tensor or a Parameter (any other class may answer its attributes itself)
// without a grad_fn (reading .grad of a tensor with one warns in Python).
bool plain_leaf(PyObject* t) {
  if (!plain_class(t)) return false;
  return !THPVariable_Unpack(t).grad_fn();
}

// dict.get(key) (borrowed; nullptr for a missing key).
PyObject* lookup(PyObject* dict, PyObject* key) {
  PyObject* v = PyDict_GetItemWithError(dict, key);
  if (v == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

// A shapes-only snapshot of `t`: TensorData(shape, dtype, device, None, None, requires_grad, uid).
py::object shape_only(const Maker& data, Shapes& shapes, Devices& devices, const at::Tensor& t, bool requires_grad,
                      long long uid) {
  py::object number = int_of(uid);
  PyObject* values[] = {shapes.get(t.sizes()), gradviz_dtype_name(t.scalar_type()).ptr(), devices.get(t.device()),
                        Py_None, Py_None, requires_grad ? Py_True : Py_False, number.ptr()};
  return py::reinterpret_steal<py::object>(data.make(values));
}

py::object leaves_shapes_only(py::dict leaf_tensors, py::dict initial, py::dict leaf_node_of, py::object store,
                              py::handle data_class, py::handle leaf_class) {
  // every tensor read first: a subclass or a tensor with a grad_fn leaves the whole pass to Python
  PyObject *key, *value;
  Py_ssize_t pos = 0;
  while (PyDict_Next(leaf_tensors.ptr(), &pos, &key, &value)) {
    if (!plain_leaf(value)) return py::none();
    PyObject* init = lookup(initial.ptr(), key);
    if (init != nullptr && init != Py_None && !plain_leaf(init)) return py::none();
  }
  const Maker& data = data_maker(data_class.ptr());
  const Maker& leaf = maker_of(leaf_class.ptr(),
                               {"name", "node", "tensor", "requires_grad", "grad", "initial_grad", "contributions"});
  Shapes shapes;
  Devices devices;
  py::dict leaves, into;
  long long count = int_attr(store.ptr(), "_count");
  pos = 0;
  while (PyDict_Next(leaf_tensors.ptr(), &pos, &key, &value)) {
    const at::Tensor& t = THPVariable_Unpack(value);
    const bool rg = t.requires_grad();
    // numbered in order: the tensor, its gradient before backward, its .grad after
    py::object tensor = shape_only(data, shapes, devices, t, rg, ++count);
    PyObject* init = lookup(initial.ptr(), key);
    py::object init_snap = py::none();
    if (init != nullptr && init != Py_None) {
      const at::Tensor& i = THPVariable_Unpack(init);
      init_snap = shape_only(data, shapes, devices, i, i.requires_grad(), ++count);
    }
    const at::Tensor& g = t.grad();
    py::object grad_snap = py::none();
    if (g.defined()) grad_snap = shape_only(data, shapes, devices, g, false, ++count);  // (a detached copy's)
    PyObject* nid = lookup(leaf_node_of.ptr(), key);
    if (nid == nullptr) nid = Py_None;
    py::list contributions;
    PyObject* fields[] = {key, nid, tensor.ptr(), rg ? Py_True : Py_False, grad_snap.ptr(), init_snap.ptr(),
                          contributions.ptr()};
    py::object info = py::reinterpret_steal<py::object>(leaf.make(fields));
    if (nid != Py_None) {
      // (the shape tuple the snapshot holds, as info.tensor.shape)
      py::tuple pair = py::make_tuple(info, py::reinterpret_borrow<py::object>(shapes.get(t.sizes())));
      if (PyDict_SetItem(into.ptr(), nid, pair.ptr()) < 0) throw py::error_already_set();
    }
    if (PyDict_SetItem(leaves.ptr(), key, info.ptr()) < 0) throw py::error_already_set();
  }
  set_int_attr(store.ptr(), "_count", count);
  return py::make_tuple(leaves, into);
}

// One edge into a leaf's node: the producer's slot, the leaf's LeafInfo, its contributions list and
// shape (borrowed: `into` and the LeafInfos hold them while the pass runs).
struct Feed {
  PyObject* slot;
  long long slot_value;
  PyObject* info;
  PyObject* contributions;
  PyObject* shape;
};

void leaf_contributions(py::list edges, py::list backward, py::dict into, py::handle contribution_class,
                        py::object reduce) {
  static PyObject* s_contributions = PyUnicode_InternFromString("contributions");
  static PyObject* s_node = PyUnicode_InternFromString("node");
  static PyObject* s_index = PyUnicode_InternFromString("index");
  static PyObject* s_grad_inputs = PyUnicode_InternFromString("grad_inputs");
  static PyObject* s_shape = PyUnicode_InternFromString("shape");
  // only the edges into a leaf's node matter: the slots of each node that feed a leaf, in edge order
  std::unordered_map<long long, std::vector<Feed>> into_leaf;
  std::vector<py::object> held;  // (the contributions lists, held while the pass runs)
  const Py_ssize_t m = PyList_GET_SIZE(edges.ptr());
  for (Py_ssize_t e = 0; e < m; ++e) {
    PyObject* edge = PyList_GET_ITEM(edges.ptr(), e);
    if (!PyTuple_Check(edge) || PyTuple_GET_SIZE(edge) != 3) throw py::type_error("gradviz: an edge is not a triple");
    PyObject* pair = lookup(into.ptr(), PyTuple_GET_ITEM(edge, 1));
    if (pair == nullptr) continue;
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) throw py::type_error("gradviz: into holds no pairs");
    PyObject* info = PyTuple_GET_ITEM(pair, 0);
    held.push_back(attr(info, s_contributions));
    PyObject* slot = PyTuple_GET_ITEM(edge, 2);
    into_leaf[int_value(PyTuple_GET_ITEM(edge, 0))].push_back(
        Feed{slot, int_value(slot), info, held.back().ptr(), PyTuple_GET_ITEM(pair, 1)});
  }
  if (into_leaf.empty()) return;
  const Maker& make = maker_of(contribution_class.ptr(),
                               {"producer", "slot", "value", "backward_event", "leaf", "reduced_from", "_running"});
  // each leaf's contributions in the order their producers ran (then by slot)
  const Py_ssize_t n = PyList_GET_SIZE(backward.ptr());
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* ev = PyList_GET_ITEM(backward.ptr(), i);
    // (getattr: reading the instance's dict directly would make one of its inline attributes)
    py::object node = attr(ev, s_node);
    auto found = into_leaf.find(int_value(node.ptr()));
    if (found == into_leaf.end()) continue;
    py::object grads = attr(ev, s_grad_inputs);
    const Py_ssize_t n_grads = PyObject_Length(grads.ptr());
    if (n_grads < 0) throw py::error_already_set();
    py::object index = attr(ev, s_index);
    for (const Feed& f : found->second) {
      if (f.slot_value >= n_grads) continue;
      py::object g = py::reinterpret_steal<py::object>(PySequence_GetItem(grads.ptr(), f.slot_value));
      if (!g) throw py::error_already_set();
      if (g.is_none()) continue;
      py::object reduced_from = py::none();
      py::object shape = py::reinterpret_steal<py::object>(PySequence_Tuple(attr(g.ptr(), s_shape).ptr()));
      if (!shape) throw py::error_already_set();
      const int differ = PyObject_RichCompareBool(shape.ptr(), f.shape, Py_NE);
      if (differ < 0) throw py::error_already_set();
      if (differ) {
        // the engine sums a broadcast gradient down to the leaf's shape before it arrives
        reduced_from = shape;
        g = reduce(g, py::handle(f.shape));
      }
      PyObject* values[] = {node.ptr(), f.slot, g.ptr(), index.ptr(), f.info, reduced_from.ptr(), Py_None};
      py::object c = py::reinterpret_steal<py::object>(make.make(values));
      if (PyList_Append(f.contributions, c.ptr()) < 0) throw py::error_already_set();
    }
  }
}


// 1 where every value of `g` is finite, 0 where one is not, -1 where its memory is not read here
// (not a CPU tensor filling its memory without gaps, a dtype other than float16/32/64, bfloat16).
int finite_in_place(const at::Tensor& g) {
  if (!g.device().is_cpu() || g.layout() != at::kStrided || !g.has_storage() || g._is_zerotensor() ||
      g.key_set().has(c10::DispatchKey::Python) || !g.is_non_overlapping_and_dense()) {
    return -1;
  }
  const int64_t n = g.numel();
  const void* p = g.const_data_ptr();
  switch (g.scalar_type()) {
    case at::kFloat: return finite_bits<uint32_t, 0x7f800000u>(p, n);
    case at::kDouble: return finite_bits<uint64_t, 0x7ff0000000000000u>(p, n);
    case at::kHalf: return finite_bits<uint16_t, 0x7c00u>(p, n);
    case at::kBFloat16: return finite_bits<uint16_t, 0x7f80u>(p, n);
    default: return -1;
  }
}

py::object grads_finite(py::list tensors) {
  const Py_ssize_t n = PyList_GET_SIZE(tensors.ptr());
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!plain_leaf(PyList_GET_ITEM(tensors.ptr(), i))) return py::none();
  }
  py::list others;
  for (Py_ssize_t i = 0; i < n; ++i) {
    const at::Tensor& g = THPVariable_Unpack(PyList_GET_ITEM(tensors.ptr(), i)).grad();
    if (!g.defined() || !g.is_floating_point()) continue;  // (only floating gradients are looked at)
    const int finite = finite_in_place(g);
    if (finite == 0) return py::make_tuple(false, others);
    if (finite < 0 && PyList_Append(others.ptr(), int_of(i).ptr()) < 0) throw py::error_already_set();
  }
  return py::make_tuple(true, others);
}

}  // namespace

// Adds the functions above to the helper's module.
void gradviz_add_leaves(py::module_& m) {
  m.def("leaves_shapes_only", &leaves_shapes_only, py::arg("leaf_tensors"), py::arg("initial"),
        py::arg("leaf_node_of"), py::arg("store"), py::arg("data_class"), py::arg("leaf_class"));
  m.def("leaf_contributions", &leaf_contributions, py::arg("edges"), py::arg("backward"), py::arg("into"),
        py::arg("contribution_class"), py::arg("reduce"));
  m.def("grads_finite", &grads_finite, py::arg("tensors"));
}
