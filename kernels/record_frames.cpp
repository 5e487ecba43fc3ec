// The model's source line of an op, read off the interpreter's frame stack without making a
// Python frame object per frame looked at.
//
// Part of the recorder's helper (record_hooks.cpp holds the module; gradviz/core/fastpath.py builds
// both files into it). gradviz/core/capture.py's ForwardCapture._source walks the frames in Python:
// sys._getframe, then f_back, the first frame whose file is not the recorder's, torch's or the
// standard library's plumbing gives "file:line". Each frame it looks at the first time becomes a
// Python frame object (about 17 us an event on an RNN cell). SourceWalk does the same walk over
// CPython 3.11's _PyInterpreterFrame list, which the interpreter keeps anyway:
//   - frames that sys._getframe and f_back skip (incomplete: not yet at their first instruction)
//     are skipped alike;
//   - whether a file is internal is asked of the recorder once per code object (`internal(filename)`,
//     the same test the Python walk makes), the code object held so its address stays its own;
//   - the line is PyFrame_GetLineNumber's: a frame object's f_lineno where it is set (a tracer or a
//     debugger's jump), else the code's line table at the frame's last instruction; "file:line"
//     is made once per (code object, instruction).
// On any other Python version `available` is False and the recorder keeps its Python walk.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <unordered_map>

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#define GRADVIZ_FRAME_WALK 1
#include <internal/pycore_frame.h>
#endif

namespace py = pybind11;

namespace {

#ifdef GRADVIZ_FRAME_WALK
struct Place {
  const PyCodeObject* code;
  int lasti;
  bool operator==(const Place& o) const { return code == o.code && lasti == o.lasti; }
};

struct PlaceHash {
  size_t operator()(const Place& p) const {
    return std::hash<const void*>()(p.code) ^ (static_cast<size_t>(p.lasti) * 0x9E3779B97F4A7C15ULL);
  }
};
#endif

// "filename:line" as the Python walk writes it (line None where the code has no line there).
py::object place_text(PyCodeObject* code, int line) {
  PyObject* text = line < 0 ? PyUnicode_FromFormat("%U:None", code->co_filename)
                            : PyUnicode_FromFormat("%U:%d", code->co_filename, line);
  if (text == nullptr) {
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(text);
}

class SourceWalk {
 public:
  explicit SourceWalk(py::object internal) : internal_(std::move(internal)) {}

  // The "file:line" of the innermost frame of this thread whose file is not internal, or None.
  py::object operator()() {
#ifdef GRADVIZ_FRAME_WALK
    PyThreadState* ts = PyThreadState_Get();
    for (_PyInterpreterFrame* f = ts->cframe->current_frame; f != nullptr; f = f->previous) {
      if (_PyFrame_IsIncomplete(f)) {
        continue;
      }
      PyCodeObject* code = f->f_code;
      auto it = codes_.find(code);
      if (it == codes_.end()) {
        bool internal = internal_(py::handle(code->co_filename)).cast<bool>();
        it = codes_.emplace(code, Code{py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(code)),
                                       internal}).first;
      }
      if (it->second.internal) {
        continue;
      }
      if (f->frame_obj != nullptr && f->frame_obj->f_lineno != 0) {
        return place_text(code, f->frame_obj->f_lineno);  // (set by a tracer or a jump)
      }
      const int lasti = _PyInterpreterFrame_LASTI(f);
      auto found = places_.find(Place{code, lasti});
      if (found == places_.end()) {
        int line = PyCode_Addr2Line(code, lasti * static_cast<int>(sizeof(_Py_CODEUNIT)));
        found = places_.emplace(Place{code, lasti}, place_text(code, line)).first;
      }
      return found->second;
    }
    return py::none();
#else
    throw std::runtime_error("gradviz: the frame walk needs CPython 3.11");
#endif
  }

 private:
  struct Code {
    py::object held;  // the code object, so its address is not reused while cached
    bool internal;
  };
  py::object internal_;
#ifdef GRADVIZ_FRAME_WALK
  std::unordered_map<const PyCodeObject*, Code> codes_;
  std::unordered_map<Place, py::object, PlaceHash> places_;
#endif
};

}  // namespace

// Adds SourceWalk and `FRAME_WALK` (whether it works on this Python) to the helper's module.
void gradviz_add_frames(py::module_& m) {
#ifdef GRADVIZ_FRAME_WALK
  m.attr("FRAME_WALK") = true;
#else
  m.attr("FRAME_WALK") = false;
#endif
  py::class_<SourceWalk>(m, "SourceWalk")
      .def(py::init<py::object>(), py::arg("internal"))
      .def("__call__", &SourceWalk::operator());
}
