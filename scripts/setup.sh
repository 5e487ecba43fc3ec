#!/usr/bin/env bash
# Set up everything gradviz needs on a fresh Debian 12 machine (Python 3.11, root, no display):
# system packages (fonts, Xvfb, Graphviz for the benchmark anchor), a virtual environment in .venv,
# the CPU build of torch, gradviz itself with its gui and test extras, and its cpp backend.
# Safe to run again: every step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${GRADVIZ_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
log() { printf '[setup] %s\n' "$*" >&2; }

# System packages: fonts (Qt draws empty boxes without them, CJK for Chinese), Xvfb for a real window,
# the X/GL libraries PySide6 loads, Graphviz's dot for the torchviz anchor in benchmarks.
APT_PKGS=(fonts-dejavu-core fontconfig fonts-wqy-microhei xvfb xauth libxcb-icccm4 libxcb-keysyms1
          libxcb-image0 libxcb-render-util0 libxcb-xkb1 libxcb-randr0 libxcb-shape0 libxcb-xinerama0
          libxcb-cursor0 libxkbcommon0 libxkbcommon-x11-0 libegl1 libgl1 libglib2.0-0 libdbus-1-3
          libfontconfig1 graphviz ninja-build)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
  else
    log "warning: missing system packages (install them as root): ${missing[*]}"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
stamp="$VENV/.gradviz-setup"
want="$(sha1sum pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
# gradviz's own bytecode, written even where PYTHONDONTWRITEBYTECODE is set (as on CI): the app
# would otherwise compile its modules on every start (about 0.2 s of a cold start)
compile_gradviz() { "$VPY" -m compileall -q gradviz >/dev/null || true; }
# the cpp backend of linear-function, built once here (about a minute; later a cached load) so a
# new user's first `gradviz backends` or `--param backend=cpp` does not wait for it, and the
# recorder's helper (recording never builds it; without it recording is slower); not fatal
build_kernels() {
  "$VPY" - <<'PY' || log "warning: could not build the cpp backend; 'gradviz backends' says why"
import sys
from gradviz.core import extension
state = extension.build_state()
if not state.cpu_ok:
    print(f"[setup] the cpp backend is not available: {state.cpu_reason}", file=sys.stderr)
elif not state.cached:
    print(f"[setup] built the cpp backend in {state.build_dir}", file=sys.stderr)
# the recorder's helper (a C++ graph walk and backward hooks); recording runs without it, slower
from gradviz.core import fastpath
ok, note = fastpath.build()
if not ok:
    print(f"[setup] the recorder's helper is not available ({note}); recording uses its Python path",
          file=sys.stderr)
elif note:
    print(f"[setup] the recorder's helper: {note}", file=sys.stderr)
PY
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VPY" -c 'import gradviz, torch' 2>/dev/null; then
  compile_gradviz
  build_kernels
  exit 0
fi
"$VPY" -m pip install -q --upgrade pip setuptools wheel </dev/null
# torch first, the CPU build, so nothing below pulls the multi-GB CUDA wheels.
if ! "$VPY" -c 'import torch' 2>/dev/null; then
  log "installing torch (CPU build)"
  "$VPY" -m pip install -q "torch==2.13.0" </dev/null
fi
log "installing gradviz with the gui, test and bench extras"
"$VPY" -m pip install -q --no-build-isolation -e ".[gui,test,bench,kernels]" --config-settings editable_mode=compat </dev/null
compile_gradviz
echo "$want" > "$stamp"
build_kernels
log "ready: $VENV"
