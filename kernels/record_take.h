// What the hooks of record_hooks.cpp record while backward runs, and record_take.cpp's function
// that hands it to Python (Hooks.take_events; see there). Part of the recorder's helper
// (gradviz/core/fastpath.py builds every file into one module and hashes this header with them).
#pragma once

#include <torch/extension.h>

#include <vector>

namespace gradviz_record __attribute__((visibility("hidden"))) {  // (as pybind11's own)

namespace py = pybind11;

// What one hook call saw. With values kept: the tensors. Without: per tensor its shape, dtype,
// device and requires_grad (`defined` false where the engine sent no tensor).
struct Meta {
  bool defined = false;
  c10::SmallVector<int64_t, 5> shape;  // (no allocation per gradient while backward runs)
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
  bool requires_grad = false;
};

// A node's metadata of one side (most nodes have one or two gradients a side: no allocation then).
using Metas = c10::SmallVector<Meta, 2>;

struct Event {
  int64_t node;
  torch::autograd::variable_list grad_inputs;   // keep: the node's outputs (gradients of its inputs)
  torch::autograd::variable_list grad_outputs;  // keep: the node's inputs (gradients of its outputs)
  Metas meta_in;                                // not keep: grad_inputs' metadata
  Metas meta_out;                               // not keep: grad_outputs' metadata
};

// Hooks.take_events(store, data_class, event_class, more) of the steps `events`.
py::list take_events(std::vector<Event> events, bool keep, py::object store, py::handle data_class,
                     py::handle event_class, py::object more);

}  // namespace gradviz_record
