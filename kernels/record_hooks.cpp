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
// and Hooks.take_events() hands what the hooks recorded to Python (record_take.cpp: the
// recording's BackwardEvents). record_frames.cpp adds
// SourceWalk (a forward op's source line off the interpreter's frames), record_capture.cpp the
// forward capture's common case, record_saved.cpp read_saved (what every node saved for
// backward, read in one call), record_stats.cpp stats_rows (the statistics of gradients past the
// value budget).
#include <torch/extension.h>

#include <torch/csrc/DynamicTypes.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/python_cpp_function.h>
#include <torch/csrc/autograd/python_function.h>
#include <torch/csrc/autograd/python_variable.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "record_take.h"

namespace py = pybind11;
namespace ag = torch::autograd;


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

using gradviz_record::Event;
using gradviz_record::Meta;

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

// A post hook on each node of `fns` (index i: the node's id), removed by remove().
class Hooks {
 public:
  Hooks(py::list fns, bool keep, py::object poll) : state_(std::make_shared<State>()) {
    state_->keep = keep;
    state_->poll = std::move(poll);
    const Py_ssize_t n = PyList_GET_SIZE(fns.ptr());
    nodes_.reserve(n);
    keys_.reserve(n);
    state_->events.reserve(n);  // (each node runs once in most graphs: no regrowth while backward runs)
    for (Py_ssize_t i = 0; i < n; ++i) {
      auto node = node_of(PyList_GET_ITEM(fns.ptr(), i));
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


  // take_events(): record_take.cpp (empties the list).
  py::list take_events(py::object store, py::handle data_class, py::handle event_class, py::object more) {
    return gradviz_record::take_events(steps(), state_->keep, std::move(store), data_class, event_class,
                                       std::move(more));
  }

  ~Hooks() { remove(); }

 private:
  // The steps recorded so far, taken out of the list.
  std::vector<Event> steps() {
    std::vector<Event> events;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      events.swap(state_->events);
    }
    return events;
  }
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
void gradviz_add_modules(py::module_& m);  // record_modules.cpp
void gradviz_add_leaves(py::module_& m);  // record_leaves.cpp

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gradviz's recorder helpers: graph walk, post hooks recording in C++, row copies, saved values";
  m.attr("CANCELLED") = kCancelled;
  m.def("walk", &walk, py::arg("root"), py::arg("max_nodes"), py::arg("poll") = py::none());
  py::class_<Hooks>(m, "Hooks")
      .def(py::init<py::list, bool, py::object>(), py::arg("fns"), py::arg("keep"), py::arg("poll") = py::none())
      .def("remove", &Hooks::remove)
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
  gradviz_add_modules(m);
  gradviz_add_leaves(m);
}
