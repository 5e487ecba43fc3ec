// The recorder's per-node work in C++: walk the autograd graph, record what the engine sends
// through every node while backward runs, and copy many small tensors into one buffer.
//
// A Python module (pybind11), loaded by gradviz/core/fastpath.py; gradviz/core/recorder.py uses it
// when it is there and does the same in Python when it is not. Each function does exactly what the
// Python code it stands in for does, in the same order:
//   walk(root, max_nodes)        _walk_graph's breadth-first walk (ids in discovery order, one edge
//                                per next_functions slot), and each node's name()
//   Hooks(fns, keep, poll)       a post hook on every node, as fn.register_hook(hook) does; the hook
//                                appends (node index, grad_inputs, grad_outputs) to a list instead
//                                of calling Python (keep: the tensors themselves; else only shape,
//                                dtype, device and requires_grad, holding no gradient)
//   stack_rows(tensors, out)     out[j] = tensors[j], bit for bit, as torch.stack(tensors) would
//   stack(tensors)               the same into a new tensor
// and Hooks.take() hands a gradient that only it holds back as a numpy array over the gradient's
// memory (what Tensor.numpy() gives, without a Python tensor in between); Hooks.take_events()
// makes the recording's BackwardEvents and their snapshots straight away (what backward_run's
// Python path makes of take()'s lists, the same objects and numbers), leaving to Python
// (TensorStore.capture_many) only the gradients it does not own. record_frames.cpp adds
// SourceWalk (a forward op's source line off the interpreter's frames), record_capture.cpp the
// forward capture's common case, record_saved.cpp read_saved (what every node saved for
// backward, read in one call), record_stats.cpp stats_rows (the statistics of gradients past the
// value budget).
#include <torch/extension.h>
#include <pybind11/numpy.h>

#include <torch/csrc/DynamicTypes.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/python_cpp_function.h>
#include <torch/csrc/autograd/python_function.h>
#include <torch/csrc/autograd/python_variable.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace py = pybind11;
namespace ag = torch::autograd;

const py::object& gradviz_dtype_name(at::ScalarType s);                                   // record_saved.cpp
void gradviz_stats_of(const std::vector<const at::Tensor*>& tensors, double* out);  // record_stats.cpp

namespace {

// The marker of the error a hook raises when `poll` asked to stop (recorder.py looks for it).
const char* const kCancelled = "gradviz-recording-cancelled";

// The node behind a grad_fn object: a C++ node's wrapper or a custom Function's node.
c10::intrusive_ptr<ag::Node> node_of(PyObject* obj) {
  if (ag::THPCppFunction_Check(obj)) {
    return reinterpret_cast<ag::THPCppFunction*>(obj)->cdata;
  }
  if (THPFunction_Check(obj)) {
    return reinterpret_cast<THPFunction*>(obj)->cdata;
  }
  throw py::type_error("gradviz: not an autograd node");
}

// Breadth first from `root`: the nodes in the order they were found (their Python objects), the
// edges (src, dst, slot), one per next_functions slot that holds a node, and each node's name.
// Returns (fns, edges, names, complete): complete is False when more than max_nodes were found (the
// walk stopped there). poll() is called every 1024 nodes; True stops the walk (returns None).
py::object walk(py::handle root, int64_t max_nodes, py::object poll) {
  std::vector<c10::intrusive_ptr<ag::Node>> nodes;
  std::unordered_map<const ag::Node*, int64_t> ids;
  // room for a large graph up front: growing the table node by node rehashed it ~17 times at 100k
  const size_t room = static_cast<size_t>(std::min<int64_t>(std::max<int64_t>(max_nodes, 1), 1 << 16));
  ids.reserve(room);
  nodes.reserve(room);
  nodes.push_back(node_of(root.ptr()));
  ids.emplace(nodes[0].get(), 0);
  // (src, dst, slot) of every edge, made into Python tuples once the walk is done
  std::vector<int64_t> flat;
  flat.reserve(room * 6);
  bool complete = true;
  for (size_t src = 0; src < nodes.size() && complete; ++src) {
    const auto& next = nodes[src]->next_edges();
    for (size_t slot = 0; slot < next.size(); ++slot) {
      const auto& fn = next[slot].function;
      if (!fn) {
        continue;
      }
      auto found = ids.emplace(fn.get(), static_cast<int64_t>(nodes.size()));
      if (found.second) {
        if (static_cast<int64_t>(nodes.size()) >= max_nodes) {
          ids.erase(found.first);
          complete = false;
          break;
        }
        nodes.push_back(fn);
      }
      flat.push_back(static_cast<int64_t>(src));
      flat.push_back(found.first->second);
      flat.push_back(static_cast<int64_t>(slot));
    }
    if (!poll.is_none() && ((src + 1) & 1023) == 0 && poll().cast<bool>()) {
      return py::none();
    }
  }
  const Py_ssize_t n_edges = static_cast<Py_ssize_t>(flat.size() / 3);
  py::list edges(n_edges);
  for (Py_ssize_t e = 0; e < n_edges; ++e) {
    PyObject* t = PyTuple_New(3);
    if (t == nullptr) {
      throw py::error_already_set();
    }
    for (Py_ssize_t k = 0; k < 3; ++k) {
      PyObject* v = PyLong_FromLongLong(flat[3 * e + k]);
      if (v == nullptr) {
        Py_DECREF(t);
        throw py::error_already_set();
      }
      PyTuple_SET_ITEM(t, k, v);
    }
    PyList_SET_ITEM(edges.ptr(), e, t);
  }
  py::list fns(nodes.size());
  py::list names(nodes.size());
  // one str per node class, shared by its nodes (a handful of classes among many nodes)
  std::unordered_map<std::string, py::str> interned;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const auto& n = nodes[i];
    PyList_SET_ITEM(fns.ptr(), static_cast<Py_ssize_t>(i), ag::functionToPyObject(n));
    std::string name = n->name();
    auto it = interned.find(name);
    if (it == interned.end()) {
      it = interned.emplace(name, py::str(name)).first;
    }
    PyList_SET_ITEM(names.ptr(), static_cast<Py_ssize_t>(i), it->second.inc_ref().ptr());
  }
  return py::make_tuple(fns, edges, names, complete);
}

// What one hook call saw. With values kept: the tensors. Without: per tensor its shape, dtype,
// device and requires_grad (`defined` false where the engine sent no tensor).
struct Meta {
  bool defined = false;
  c10::SmallVector<int64_t, 5> shape;  // (no allocation per gradient while backward runs)
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
  bool requires_grad = false;
};

struct Event {
  int64_t node;
  ag::variable_list grad_inputs;   // keep: the node's outputs (gradients of its inputs)
  ag::variable_list grad_outputs;  // keep: the node's inputs (gradients of its outputs)
  std::vector<Meta> meta_in;       // not keep: grad_inputs' metadata
  std::vector<Meta> meta_out;      // not keep: grad_outputs' metadata
};

struct State {
  bool keep;
  py::object poll;  // called (with the GIL) every 256 events; True stops backward
  std::mutex mutex;
  std::vector<Event> events;
};

Meta meta_of(const at::Tensor& t) {
  Meta m;
  if (!t.defined()) {
    return m;
  }
  m.defined = true;
  auto sizes = t.sizes();
  m.shape.assign(sizes.begin(), sizes.end());
  m.dtype = t.scalar_type();
  m.device = t.device();
  m.requires_grad = t.requires_grad();
  return m;
}

struct RecordHook : ag::FunctionPostHook {
  RecordHook(std::shared_ptr<State> state, int64_t node) : state_(std::move(state)), node_(node) {}

  ag::variable_list operator()(const ag::variable_list& outputs,
                               const ag::variable_list& inputs) override {
    Event ev;
    ev.node = node_;
    if (state_->keep) {
      ev.grad_inputs = outputs;
      ev.grad_outputs = inputs;
    } else {
      // the same order as the Python hook takes them: grad_inputs, then grad_outputs
      ev.meta_in.reserve(outputs.size());
      for (const auto& t : outputs) ev.meta_in.push_back(meta_of(t));
      ev.meta_out.reserve(inputs.size());
      for (const auto& t : inputs) ev.meta_out.push_back(meta_of(t));
    }
    size_t count;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->events.push_back(std::move(ev));
      count = state_->events.size();
    }
    if ((count & 255) == 0 && !state_->poll.is_none()) {
      bool stop;
      {
        py::gil_scoped_acquire gil;
        stop = state_->poll().cast<bool>();
      }
      if (stop) {
        throw std::runtime_error(kCancelled);
      }
    }
    return outputs;  // the gradients pass on unchanged
  }

 private:
  std::shared_ptr<State> state_;
  int64_t node_;
};

py::object tensor_or_none(const at::Tensor& t) {
  if (!t.defined()) {
    return py::none();
  }
  return py::reinterpret_steal<py::object>(THPVariable_Wrap(t));
}

// A numpy array over the memory of `t` (a CPU tensor that fills its memory without gaps), which
// it keeps alive, with t's shape and strides, as t.numpy() makes it; None for a dtype numpy does
// not hold as it is (the recorder then takes the tensor itself).
py::object numpy_of(const at::Tensor& t, std::unordered_map<int, py::object>& dtypes) {
  const char* name = nullptr;
  switch (t.scalar_type()) {
    case at::kHalf: name = "float16"; break;
    case at::kFloat: name = "float32"; break;
    case at::kDouble: name = "float64"; break;
    case at::kComplexFloat: name = "complex64"; break;
    case at::kComplexDouble: name = "complex128"; break;
    case at::kBool: name = "bool"; break;
    case at::kByte: name = "uint8"; break;
    case at::kChar: name = "int8"; break;
    case at::kShort: name = "int16"; break;
    case at::kInt: name = "int32"; break;
    case at::kLong: name = "int64"; break;
    default: return py::none();
  }
  auto key = static_cast<int>(t.scalar_type());
  auto it = dtypes.find(key);
  if (it == dtypes.end()) {
    it = dtypes.emplace(key, py::dtype(name)).first;
  }
  const auto item = static_cast<py::ssize_t>(t.element_size());
  std::vector<py::ssize_t> shape(t.sizes().begin(), t.sizes().end());
  std::vector<py::ssize_t> strides;
  strides.reserve(shape.size());
  for (auto s : t.strides()) strides.push_back(s * item);
  auto* held = new at::Tensor(t);
  py::capsule base(held, [](void* p) { delete static_cast<at::Tensor*>(p); });
  return py::array(py::reinterpret_borrow<py::dtype>(it->second), std::move(shape), std::move(strides),
                   held->data_ptr(), base);
}

py::object meta_or_none(const Meta& m, std::unordered_map<int, py::object>& dtypes) {
  if (!m.defined) {
    return py::none();
  }
  py::tuple shape(m.shape.size());
  for (size_t i = 0; i < m.shape.size(); ++i) {
    shape[i] = py::int_(m.shape[i]);
  }
  auto key = static_cast<int>(m.dtype);
  auto it = dtypes.find(key);
  if (it == dtypes.end()) {
    it = dtypes.emplace(key, py::reinterpret_borrow<py::object>(
                                 reinterpret_cast<PyObject*>(torch::getTHPDtype(m.dtype)))).first;
  }
  py::str device = m.device.is_cpu() ? py::str("cpu") : py::str(m.device.str());
  return py::make_tuple(shape, it->second, device, m.requires_grad);
}

// New instances of the recording's dataclasses (TensorData, BackwardEvent) made as their
// __init__ makes them, without running it: object.__new__(cls), then each field set in the order of
// the class's fields (the order __init__ sets them, so that the instances share their attribute
// layout as those __init__ makes do: the same memory per instance). A class whose instances are
// not made that way (its own __new__ or __setattr__) is called instead.
class Maker {
 public:
  Maker(py::handle cls, std::vector<const char*> fields) : cls_(py::reinterpret_borrow<py::object>(cls)) {
    TORCH_CHECK(PyType_Check(cls.ptr()), "Maker: not a class");
    type_ = reinterpret_cast<PyTypeObject*>(cls.ptr());
    direct_ = type_->tp_new == PyBaseObject_Type.tp_new && type_->tp_setattro == PyObject_GenericSetAttr;
    for (const char* f : fields) {
      PyObject* name = PyUnicode_InternFromString(f);
      if (name == nullptr) throw py::error_already_set();
      names_.push_back(py::reinterpret_steal<py::object>(name));
    }
    empty_ = py::reinterpret_steal<py::object>(PyTuple_New(0));
    if (!empty_) throw py::error_already_set();
  }

  // A new instance with values[k] for field k (borrowed references); a new reference.
  PyObject* make(PyObject* const* values) const {
    const size_t n = names_.size();
    if (!direct_) {
      PyObject* out = PyObject_Vectorcall(cls_.ptr(), values, n, nullptr);
      if (out == nullptr) throw py::error_already_set();
      return out;
    }
    PyObject* out = type_->tp_new(type_, empty_.ptr(), nullptr);
    if (out == nullptr) throw py::error_already_set();
    for (size_t k = 0; k < n; ++k) {
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
  PyTypeObject* type_;
  bool direct_;
  std::vector<py::object> names_;
  py::object empty_;
};

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

py::object int_of(long long v) {
  PyObject* o = PyLong_FromLongLong(v);
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

long long get_int(py::handle obj, const char* name) {
  py::object v = obj.attr(name);
  long long out = PyLong_AsLongLong(v.ptr());
  if (out == -1 && PyErr_Occurred()) throw py::error_already_set();
  return out;
}

// A post hook on each node of `fns` (index i: the node's id), removed by remove().
class Hooks {
 public:
  Hooks(py::list fns, bool keep, py::object poll) : state_(std::make_shared<State>()) {
    state_->keep = keep;
    state_->poll = std::move(poll);
    nodes_.reserve(fns.size());
    keys_.reserve(fns.size());
    for (size_t i = 0; i < fns.size(); ++i) {
      auto node = node_of(fns[i].ptr());
      keys_.push_back(node->add_post_hook(std::make_unique<RecordHook>(state_, static_cast<int64_t>(i))));
      nodes_.push_back(std::move(node));
    }
  }

  // Take every hook off its node (before the nodes go; safe to call twice).
  void remove() {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      nodes_[i]->del_post_hook(keys_[i]);
    }
    nodes_.clear();
    keys_.clear();
  }

  size_t size() {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->events.size();
  }

  // With values: (node ids, grad_inputs counts, grad_outputs counts, index, unique, owned,
  // finite). `unique` holds each tensor once, in the order of first appearance in the steps, each
  // step giving its grad_outputs, then its grad_inputs; `index` gives each of those places' tensor
  // (its position in `unique`, -1 where the engine sent none). owned[j]: whether nothing but this
  // list can reach the memory of unique[j] (see exclusive); such a tensor of a dtype numpy holds
  // comes as a numpy array over its memory instead of a tensor (numpy_of). finite[j]: for an owned
  // floating or complex tensor, whether all its values are finite, else None. Without values: (node ids,
  // counts, counts, flat), flat holding each step's grad_inputs' then grad_outputs' (shape,
  // dtype, device, requires_grad) or None. Empties the list.
  py::tuple take() {
    std::vector<Event> events;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      events.swap(state_->events);
    }
    py::list ids, n_in, n_out;
    if (!state_->keep) {
      py::list flat;
      std::unordered_map<int, py::object> dtypes;
      for (const auto& ev : events) {
        ids.append(ev.node);
        n_in.append(ev.meta_in.size());
        n_out.append(ev.meta_out.size());
        for (const auto& m : ev.meta_in) flat.append(meta_or_none(m, dtypes));
        for (const auto& m : ev.meta_out) flat.append(meta_or_none(m, dtypes));
      }
      return py::make_tuple(ids, n_in, n_out, flat);
    }
    // each tensor once, in order of first appearance: what is listed, and which are ours
    Unique seen = unique_tensors(events);
    auto mine = exclusive(seen);
    py::list index, unique, owned, finite;
    std::unordered_map<int, py::object> np_dtypes;
    size_t at = 0;  // (seen.order: each place's position, in the order of the loops below)
    for (const auto& ev : events) {
      ids.append(ev.node);
      n_in.append(ev.grad_inputs.size());
      n_out.append(ev.grad_outputs.size());
      for (const auto* list : {&ev.grad_outputs, &ev.grad_inputs}) {
        for (size_t k = 0; k < list->size(); ++k) index.append(seen.order[at++]);
      }
    }
    const auto n = static_cast<size_t>(seen.count);
    for (size_t j = 0; j < n; ++j) {
      // (the first seen.count are tensors of `events`: at::Tensor objects)
      const auto& t = static_cast<const at::Tensor&>(*seen.tensors[j]);
      const bool own = mine[j];
      py::object array = own ? numpy_of(t, np_dtypes) : py::none();
      unique.append(array.is_none() ? tensor_or_none(t) : array);
      owned.append(own);
      finite.append(own ? all_finite(t) : py::none());
    }
    return py::make_tuple(ids, n_in, n_out, index, unique, owned, finite);
  }

  // The BackwardEvents of the steps taken, with their snapshots: what backward_run's Python
  // path (capture_many or shapes_only, then _events) makes of take()'s lists, the same objects,
  // uid numbers and store counters, made here. Empties the list.
  //
  // Without values: per step, a TensorData(shape, dtype, device, None, None, requires_grad, uid)
  // for each gradient (grad_inputs', then grad_outputs', numbered from store._count on, as
  // TensorStore.shapes_only numbers them), and BackwardEvent(i, node, grad_outputs, grad_inputs).
  //
  // With values: the snapshots of take()'s `unique` tensors, in their order, as
  // store.capture_many(unique, stack, owned, finite, stats) takes them. An owned gradient of a
  // dtype numpy holds is taken here: within the budget (store.budget_bytes, store.bytes_kept),
  // TensorData(shape, dtype, "cpu", its numpy array, None, False, uid), filed in store._singles
  // (finite unknown) or store._bad (not finite) as _owned_array does; past the budget, for
  // float16/32/64, TensorData(shape, dtype, "cpu", None, None, False, uid) counted as dropped,
  // whose stats (computed at the end, from the gradient's memory: stats_rows's numbers) are
  // set then. Every other tensor (not owned, or an unusual dtype) goes, in runs of consecutive
  // ones, with the store's counters written back first and read again after, to
  // `more(items, owned=..., finite=...)` (capture_many with the helper's stack and stats), with
  // the very items, owned and finite flags take() gives. Then each place's snapshot (None where
  // the engine sent no tensor), BackwardEvent(i, node, grad_outputs, grad_inputs).
  py::list take_events(py::object store, py::handle data_class, py::handle event_class, py::object more) {
    std::vector<Event> events;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      events.swap(state_->events);
    }
    const Maker data(data_class, {"shape", "dtype", "device", "value", "stats", "requires_grad", "uid"});
    const Maker event(event_class, {"index", "node", "grad_outputs", "grad_inputs"});
    Shapes shapes;
    Devices devices;
    py::list out(events.size());
    if (!state_->keep) {
      long long count = get_int(store, "_count");
      for (size_t i = 0; i < events.size(); ++i) {
        const auto& ev = events[i];
        py::list lists[2] = {py::list(ev.meta_in.size()), py::list(ev.meta_out.size())};
        const std::vector<Meta>* metas[2] = {&ev.meta_in, &ev.meta_out};
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
      store.attr("_count") = int_of(count);
      return out;
    }
    Unique seen = unique_tensors(events);
    auto mine = exclusive(seen);
    const auto n = static_cast<size_t>(seen.count);
    std::vector<py::object> snaps(n);
    const long long budget = get_int(store, "budget_bytes");
    long long kept = 0, count = 0, dropped = 0, dropped_bytes = 0;
    auto load = [&]() {
      kept = get_int(store, "bytes_kept");
      count = get_int(store, "_count");
      dropped = get_int(store, "dropped_count");
      dropped_bytes = get_int(store, "dropped_bytes");
    };
    auto save = [&]() {
      store.attr("bytes_kept") = int_of(kept);
      store.attr("_count") = int_of(count);
      store.attr("dropped_count") = int_of(dropped);
      store.attr("dropped_bytes") = int_of(dropped_bytes);
    };
    load();
    py::object singles = store.attr("_singles"), bad = store.attr("_bad");
    std::unordered_map<int, py::object> np_dtypes;
    std::vector<size_t> run;  // the tensors for `more`, consecutive (not yet numbered)
    auto flush = [&]() {
      if (run.empty()) return;
      py::list items(run.size()), owned(run.size()), finite(run.size());
      for (size_t r = 0; r < run.size(); ++r) {
        const auto& t = static_cast<const at::Tensor&>(*seen.tensors[run[r]]);
        const bool own = mine[run[r]];
        py::object array = own ? numpy_of(t, np_dtypes) : py::none();
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
      if (!mine[j] || !numpy_dtype(type)) {
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
        py::object array = numpy_of(t, np_dtypes);
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
        for (size_t k = 0; k < PyList_GET_SIZE(lists[side].ptr()); ++k) {
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

  // Whether numpy holds values of this dtype as they are (numpy_of makes arrays of these).
  static bool numpy_dtype(at::ScalarType s) {
    switch (s) {
      case at::kHalf: case at::kFloat: case at::kDouble: case at::kComplexFloat: case at::kComplexDouble:
      case at::kBool: case at::kByte: case at::kChar: case at::kShort: case at::kInt: case at::kLong:
        return true;
      default:
        return false;
    }
  }

  // Whether every value of a CPU tensor that fills its memory without gaps is finite (None for
  // dtypes without NaN): its numel values start at its data pointer, in some order.
  static py::object all_finite(const at::Tensor& t) {
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

  // Whether none of the n floating values at `data` (IEEE, `Bits` wide) is infinite or NaN: those
  // are the values whose exponent bits `exp` are all ones. Tested a block at a time without a
  // branch per value (the compiler makes it a vector loop).
  template <typename Bits, Bits exp>
  static bool finite_bits(const void* data, int64_t n) {
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

  static Unique unique_tensors(const std::vector<Event>& events) {
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
  static std::vector<char> exclusive(const Unique& u) {
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

  ~Hooks() { remove(); }

 private:
  std::shared_ptr<State> state_;
  std::vector<c10::intrusive_ptr<ag::Node>> nodes_;
  std::vector<uintptr_t> keys_;
};

// out[j] = tensors[j] for every j, bit for bit (out: a contiguous CPU tensor of shape
// (len(tensors), *shape), of the tensors' dtype). A contiguous row is one memcpy.
void stack_rows(const std::vector<at::Tensor>& tensors, at::Tensor out) {
  TORCH_CHECK(out.is_contiguous() && out.device().is_cpu(), "stack_rows: out must be contiguous, on the CPU");
  TORCH_CHECK(out.dim() >= 1 && out.size(0) == static_cast<int64_t>(tensors.size()),
              "stack_rows: out has ", out.size(0), " rows for ", tensors.size(), " tensors");
  const auto row_elems = out.numel() / std::max<int64_t>(1, out.size(0));
  const auto row_bytes = row_elems * static_cast<int64_t>(out.element_size());
  auto shape = out.sizes().slice(1);
  char* base = static_cast<char*>(out.data_ptr());
  at::NoGradGuard no_grad;
  for (size_t j = 0; j < tensors.size(); ++j) {
    const auto& t = tensors[j];
    TORCH_CHECK(t.sizes() == shape && t.scalar_type() == out.scalar_type() && t.device().is_cpu() &&
                    t.layout() == at::kStrided,
                "stack_rows: tensor ", j, " does not match out");
    if (t.is_contiguous() && !t.is_conj() && !t.is_neg()) {
      if (row_bytes > 0) {
        std::memcpy(base + j * row_bytes, t.const_data_ptr(), row_bytes);
      }
    } else {
      out.select(0, static_cast<int64_t>(j)).copy_(t);
    }
  }
}

// A new tensor of `tensors` stacked, as torch.stack(tensors) makes it, copied by stack_rows.
at::Tensor stack(const std::vector<at::Tensor>& tensors) {
  TORCH_CHECK(!tensors.empty(), "stack: no tensors");
  const auto& first = tensors[0];
  std::vector<int64_t> shape{static_cast<int64_t>(tensors.size())};
  shape.insert(shape.end(), first.sizes().begin(), first.sizes().end());
  auto out = at::empty(shape, at::TensorOptions().dtype(first.scalar_type()).device(at::kCPU));
  stack_rows(tensors, out);
  return out;
}

}  // namespace

void gradviz_add_frames(py::module_& m);  // record_frames.cpp
void gradviz_add_capture(py::module_& m);  // record_capture.cpp
void gradviz_add_saved(py::module_& m);   // record_saved.cpp
void gradviz_add_events(py::module_& m);  // record_events.cpp
void gradviz_add_stats(py::module_& m);   // record_stats.cpp
void gradviz_add_graph(py::module_& m);   // record_graph.cpp

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gradviz's recorder helpers: graph walk, post hooks recording in C++, row copies, saved values";
  m.attr("CANCELLED") = kCancelled;
  m.def("walk", &walk, py::arg("root"), py::arg("max_nodes"), py::arg("poll") = py::none());
  py::class_<Hooks>(m, "Hooks")
      .def(py::init<py::list, bool, py::object>(), py::arg("fns"), py::arg("keep"), py::arg("poll") = py::none())
      .def("remove", &Hooks::remove)
      .def("take", &Hooks::take)
      .def("take_events", &Hooks::take_events, py::arg("store"), py::arg("data_class"), py::arg("event_class"),
           py::arg("more") = py::none())
      .def("__len__", &Hooks::size);
  m.def("stack_rows", &stack_rows, py::arg("tensors"), py::arg("out"));
  m.def("stack", &stack, py::arg("tensors"));
  gradviz_add_frames(m);
  gradviz_add_capture(m);
  gradviz_add_saved(m);
  gradviz_add_events(m);
  gradviz_add_stats(m);
  gradviz_add_graph(m);
}
