"""Image exports of the graph (``.png``, ``.svg``, ``.pdf``, ``.gif``); the app's dialog is `export_dialog`.

The formats register through the ``gradviz.exporters`` entry point (``qt = "gradviz.qt.export:register"``)
and paint the step's `Scene` (gradviz.core.scene), the one the app's graph paints, with a QPainter
straight onto a QImage, QSvgGenerator or QPdfWriter: no widget is built, and an export runs whole in
whatever thread calls it. No display is needed (a QApplication, for fonts, is made on the offscreen
platform where there is no display, if none exists).

Limits, stated where they apply: PNG at most `MAX_PNG_SIDE` pixels per side and `MAX_PNG_PIXELS`
in all (the scale is lowered to fit, with a note), or with ``whole`` the whole graph folded to fit
`MAX_PNG_SIDE` square at a legible scale (up to 1 GiB of image memory); PDF pages at most `MAX_PDF_POINTS` per side
(the drawing is shrunk to fit, still vector); GIF frames at most `MAX_GIF_SIDE` pixels per side and
at most `MAX_GIF_FRAMES` frames (steps are sampled evenly beyond, with a note).
"""
from __future__ import annotations

import math
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QBuffer, QCoreApplication, QIODevice, QMarginsF, QObject, QRectF, QSize, QSizeF, Qt, QThread, Signal, Slot
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPageLayout, QPageSize, QPainter, QPdfWriter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QApplication

from ..core.errors import GradvizError
from ..core.exporters import ExportOptions, export, exporter, exporters
from .i18n import tr
from .pyside_fix import protect_none
from ..core.fold import FIT_BOX
from ..core.layout import layered_layout
from ..core.recording import Recording
from ..core.scene import build_scene
from ..core.timeline import Stepper
from .scene_painter import QtScenePainter, paint_scene
from ..core.pages import LEGIBLE_SCALE, follow_rect, plan_image, plan_pdf, resolve_region

__all__ = ["register", "ensure_app", "QtExportDialog", "MAX_PNG_SIDE", "MAX_PNG_PIXELS", "MAX_PDF_POINTS",
           "MAX_GIF_SIDE", "MAX_GIF_FRAMES", "make_renderer"]

MAX_PNG_SIDE = 16384
MAX_PNG_PIXELS = 16384 * 8192
PNG_QUICK_PIXELS = 4096 * 4096  # PNGs larger than this are written with quicker compression
PNG_QUICK_QUALITY = 80  # Qt's PNG quality: less zlib effort than the default
MAX_PDF_POINTS = 14400.0  # 200 inches, the largest page PDF readers accept
MAX_GIF_SIDE = 1600
MAX_GIF_FRAMES = 300
GIF_FRAME_MS, GIF_LAST_FRAME_MS = 250, 1500
GIF_FOLLOW = (1280.0, 800.0)  # a frame that follows the backward pass: this much of the drawing at scale 1
READABLE_SCALE = 0.45  # the app's own zoom below which it drops text
_APP: Any = None


def register() -> None:
    """Entry point of the image formats: they register when this module is imported."""


def _has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def ensure_app() -> QGuiApplication:
    """Return the running QApplication, making one (offscreen where there is no display) if none exists.

    Raises
    ------
    GradvizError
        No application exists and this is not the main thread, or only a QCoreApplication exists.
    """
    global _APP
    app = QGuiApplication.instance()
    if app is None:
        if threading.current_thread() is not threading.main_thread():
            raise GradvizError("image export needs a Qt application, and one cannot be made outside the main thread",
                               hint="export from the main thread, or create a QApplication first")
        if not os.environ.get("QT_QPA_PLATFORM") and not _has_display():
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        _APP = app = QApplication(sys.argv[:1] or ["gradviz"])
    elif not isinstance(app, QGuiApplication):
        raise GradvizError("image export needs a QGuiApplication, but a QCoreApplication is running")
    protect_none()
    global _CALLER
    if _CALLER is None and _on_main_thread():
        _CALLER = _MainThreadCaller()
    return app


class _MainThreadCaller(QObject):
    """Runs functions on the GUI thread for worker threads (queued: the worker waits on an event)."""

    request = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.request.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _run(self, job: Callable[[], None]) -> None:
        job()


_CALLER: _MainThreadCaller | None = None
MAIN_THREAD_TIMEOUT_S = 120.0


def _on_main_thread() -> bool:
    """Whether this is the GUI thread (a blocking call to it from itself would deadlock)."""
    app = QCoreApplication.instance()
    if app is None:
        return threading.current_thread() is threading.main_thread()
    # the QApplication is made in Python's main thread (ensure_app insists); Qt's own answer for the rest
    return threading.current_thread() is threading.main_thread() or QThread.currentThread() is app.thread()


def call_in_main_thread(fn: Callable[[], Any], timeout: float | None = None) -> Any:
    """Return ``fn()``, run on the GUI thread (directly when already there; the caller waits otherwise).

    A worker waits at most `timeout` seconds (default `MAIN_THREAD_TIMEOUT_S`) for the GUI thread to
    run it, so a GUI thread that is blocked (waiting for this very worker) gives an error, not a hang.
    """
    if _on_main_thread():
        return fn()
    if _CALLER is None:
        raise GradvizError("image export from a worker thread needs ensure_app() called on the GUI thread first")
    done = threading.Event()
    box: dict[str, Any] = {}

    def job() -> None:
        if box.get("abandoned"):
            return
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the worker
            box["error"] = exc
        finally:
            done.set()

    _CALLER.request.emit(job)
    limit = MAIN_THREAD_TIMEOUT_S if timeout is None else timeout
    if not done.wait(limit):
        box["abandoned"] = True
        raise GradvizError(f"the GUI thread did not draw the graph within {limit:g} s",
                           hint="the app is busy or blocked; try the export again")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class _SceneRenderer:
    """One step of a recording as a `Scene`, painted with a QPainter onto any device.

    No widget is built and no other thread is asked for anything: the Scene is plain data and
    QPainter on a QImage, QSvgGenerator or QPdfWriter works in whatever thread runs the export (the
    export dialog's worker included). A GIF moves the Scene from frame to frame with a private
    stepper, updating only the nodes each step changes.
    """

    def __init__(self, rec: Recording, options: ExportOptions):
        extra = options.extra
        rolled = bool(extra.get("rolled", False))
        layout = extra.get("precomputed")
        # ``whole``: the rows are folded to fit a square image, not a page's shape (unless fold is given)
        fold = extra.get("fold", FIT_BOX if extra.get("whole") else "auto")
        if layout is None or layout.direction != options.layout or layout.rolled != rolled \
                or "fold" in extra or "proxies" in extra or extra.get("collapse") is not None or extra.get("whole"):
            try:
                layout = layered_layout(rec, options.layout, rolled, proxies=bool(extra.get("proxies", True)),
                                        fold=fold, collapse=extra.get("collapse"))
            except ValueError as exc:
                raise GradvizError(str(exc), hint="--fold takes auto, off or a number of layers per row; "
                                                  "--collapse takes use or a number of uses per box") from None
        self.recording = rec
        self.stepper = Stepper(options.timeline, options.step)
        self.scene = build_scene(rec, layout, self.stepper.state, options.theme, tr)
        self.stepper.step_changed.connect(self.scene.update)
        self.painter = QtScenePainter()
        self.background = QColor(self.scene.background)

    def graph_rect(self) -> QRectF:
        return QRectF(*self.scene.bounds)

    def caption(self) -> str:
        return self.stepper.state.step.describe(self.recording)

    def render_to(self, painter: QPainter, target: QRectF, source: QRectF, step: int | None = None,
                  full_detail: bool = False) -> None:
        """Paint `source` of the scene (at `step`, if given) into `target` of `painter`."""
        if step is not None:
            self.stepper.set_step(step)
        paint_scene(painter, self.scene, target, source, full_detail, self.painter)

    def close(self) -> None:
        """Nothing to free (kept for callers that close what they made)."""


def make_renderer(rec: Recording, options: ExportOptions) -> _SceneRenderer:
    """The step's Scene at the options' step, ready to paint onto any device in any thread."""
    return _SceneRenderer(rec, options)


def _source(renderer, options: ExportOptions) -> QRectF:
    return QRectF(*(_region(renderer, options) or renderer.scene.bounds))


def _region(renderer, options: ExportOptions) -> tuple | None:
    """The part of the drawing asked for (x, y, w, h): the app's visible part, ``around`` a node or
    the nodes of ``steps`` A:B (`gradviz.core.pages`); None for the whole drawing."""
    region = options.extra.get("region")
    whole = renderer.graph_rect()
    if isinstance(region, QRectF):
        part = region.intersected(whole)
        if part.isEmpty():
            raise GradvizError("the visible part of the graph is empty", hint="export the whole graph instead")
        return (part.x(), part.y(), part.width(), part.height())
    if region is not None and region != "whole":
        raise GradvizError(f"unknown region {region!r}", hint="use the whole graph or a QRectF of it")
    return resolve_region(renderer.recording, renderer.scene, options.timeline, options.extra.get("around"),
                          options.extra.get("steps"), options.messages)


def _notes(options: ExportOptions, notes: list) -> None:
    for text in notes:
        options.note(text)


def _fit(w: float, h: float, max_side: float, max_pixels: float | None = None) -> float:
    """The factor (at most 1) that brings a w x h picture within the limits."""
    f = min(1.0, max_side / max(w, 1.0), max_side / max(h, 1.0))
    if max_pixels is not None and w * h * f * f > max_pixels:
        f = min(f, math.sqrt(max_pixels / max(w * h, 1.0)))
    return f


def _memory() -> QBuffer:
    """An in-memory device for Qt's writers, which do not report write errors to a file."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    return buffer


def _write_bytes(path: Path, buffer: QBuffer) -> None:
    """Write what a Qt writer put in `buffer` to `path` (the export's temporary file); an OSError
    (a full disk) propagates, and the atomic write turns it into one line."""
    data = bytes(buffer.data())
    buffer.close()
    if not data:
        raise GradvizError(f"cannot write {str(path)!r}: Qt produced no data")
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()


@exporter(".png", "the graph as a PNG image at the chosen step, at a legible scale (at most 16384 px per side)")
def _export_png(rec: Recording, path: Path, options: ExportOptions) -> None:
    ensure_app()
    renderer = make_renderer(rec, options)
    plan = plan_image(renderer.scene, _region(renderer, options), options.scale, MAX_PNG_SIDE, MAX_PNG_PIXELS,
                      whole=bool(options.extra.get("whole")))
    _notes(options, plan.notes)
    source, scale = QRectF(*plan.source), plan.scale
    width, height = max(1, math.ceil(source.width() * scale)), max(1, math.ceil(source.height() * scale))
    # opaque (the theme's background fills it): an RGB PNG, a quarter fewer bytes to compress than RGBA
    image = QImage(width, height, QImage.Format.Format_RGB32)
    if image.isNull():
        raise GradvizError(f"cannot make a {width} x {height} image: not enough memory", hint="use a smaller --scale")
    image.fill(renderer.background)
    dpm = round(96 / 0.0254 * scale)
    image.setDotsPerMeterX(dpm)
    image.setDotsPerMeterY(dpm)
    options.report(0.2, "drawing")
    painter = QPainter(image)
    try:
        # labels wherever they are legible, however many nodes; below that the app's level of detail
        renderer.render_to(painter, QRectF(0, 0, width, height), source, full_detail=scale >= READABLE_SCALE)
    finally:
        painter.end()
        renderer.close()
    options.report(0.8, "writing PNG")
    buffer = _memory()
    # a large image (the whole graph, up to 16k x 16k) is compressed less: 30 % faster, 25 % larger
    if not image.save(buffer, "PNG", PNG_QUICK_QUALITY if width * height > PNG_QUICK_PIXELS else -1):
        raise GradvizError(f"cannot write {str(path)!r}: Qt could not encode the PNG image")
    _write_bytes(path, buffer)


@exporter(".svg", "the graph as SVG at the chosen step (vector; labels stay searchable text)")
def _export_svg(rec: Recording, path: Path, options: ExportOptions) -> None:
    ensure_app()
    renderer = make_renderer(rec, options)
    source = _source(renderer, options)
    scale = 1.0 if options.scale is None else options.scale  # vector: scale 1 is legible, at any size
    width, height = max(1, math.ceil(source.width() * scale)), max(1, math.ceil(source.height() * scale))
    gen = QSvgGenerator()
    buffer = _memory()  # Qt's SVG writer ignores write errors: it writes to memory, we write the file
    gen.setOutputDevice(buffer)
    gen.setSize(QSize(width, height))
    gen.setViewBox(QRectF(0, 0, width, height))
    gen.setResolution(96)
    gen.setTitle(f"gradviz: {rec.target}")
    gen.setDescription(f"step {options.step}: {renderer.caption()}")
    options.report(0.2, "drawing")
    painter = QPainter()
    if not painter.begin(gen):
        raise OSError(f"Qt could not write the SVG file {path}")
    try:
        renderer.render_to(painter, QRectF(0, 0, width, height), source, full_detail=True)
    finally:
        painter.end()
        renderer.close()
    _write_bytes(path, buffer)


@exporter(".pdf", "the graph as vector PDF at the chosen step: one page, or pages of a legible drawing")
def _export_pdf(rec: Recording, path: Path, options: ExportOptions) -> None:
    ensure_app()
    renderer = make_renderer(rec, options)
    plan = plan_pdf(renderer.scene, _region(renderer, options), options.scale, options.extra.get("page"),
                    MAX_PDF_POINTS)
    _notes(options, plan.notes)
    w_pt, h_pt = plan.page_size
    buffer = _memory()  # Qt's PDF writer ignores write errors: it writes to memory, we write the file
    writer = QPdfWriter(buffer)
    writer.setResolution(96)
    writer.setCreator("gradviz")
    writer.setTitle(f"gradviz: {rec.target}")
    layout = QPageLayout(QPageSize(QSizeF(w_pt, h_pt), QPageSize.Unit.Point, "gradviz",
                                   QPageSize.SizeMatchPolicy.ExactMatch),
                         QPageLayout.Orientation.Portrait, QMarginsF(0, 0, 0, 0))
    writer.setPageLayout(layout)
    options.report(0.2, "drawing")
    painter = QPainter()
    if not painter.begin(writer):
        raise OSError(f"Qt could not write the PDF file {path}")
    try:
        for k, page in enumerate(plan.pages):
            if k:
                writer.newPage()
                options.report(0.2 + 0.75 * k / len(plan.pages), f"page {k + 1}/{len(plan.pages)}")
            renderer.render_to(painter, QRectF(0, 0, writer.width(), writer.height()), QRectF(*page),
                               full_detail=True)
    finally:
        painter.end()
        renderer.close()
    del painter, writer  # the writer flushes the document's end into the buffer
    _write_bytes(path, buffer)


def gif_steps(options: ExportOptions, max_frames: int) -> tuple[list[int], int]:
    """The timeline steps a GIF shows: every backward step, sampled evenly past `max_frames`."""
    tl = options.timeline
    steps = list(range(tl.first_backward, len(tl)))
    if not steps:
        return [len(tl) - 1], 0
    total = len(steps)
    if total > max_frames:
        picks = np.unique(np.linspace(0, total - 1, max_frames).round().astype(int))
        steps = [steps[i] for i in picks]
    return steps, total


@exporter(".gif", "the backward pass animated, one frame per step (at most 300 frames, 1600 px)")
def _export_gif(rec: Recording, path: Path, options: ExportOptions) -> None:
    ensure_app()
    max_frames = int(options.extra.get("max_frames", MAX_GIF_FRAMES))
    if max_frames < 1:
        raise GradvizError(f"max_frames {max_frames} must be at least 1")
    renderer = make_renderer(rec, options)
    source = _source(renderer, options)
    steps, total = gif_steps(options, max_frames)
    if total > len(steps):
        options.note(f"GIF capped at {max_frames} frames: showing {len(steps)} of the {total} backward steps, "
                     "sampled evenly (first and last included)")
    scale = 1.0 if options.scale is None else options.scale
    f = _fit(source.width() * scale, source.height() * scale, MAX_GIF_SIDE)
    follow = options.scale is None and scale * f < LEGIBLE_SCALE
    if follow:
        # the whole graph would not be legible in a frame: each frame shows the part where the backward
        # pass is, at scale 1, holding still while the current node stays well inside it
        view_w, view_h = min(GIF_FOLLOW[0], source.width()), min(GIF_FOLLOW[1], source.height())
        options.note(f"the whole graph is too big for a legible GIF frame: the frames follow the backward pass, "
                     f"{view_w:.0f} x {view_h:.0f} px of it at scale 1")
    elif f < 1.0:
        scale *= f
        options.note(f"GIF frames capped at {MAX_GIF_SIDE} px per side: drawn at scale {scale:.3g}")
    if follow:
        width, height = math.ceil(view_w), math.ceil(view_h)
    else:
        width, height = max(1, math.ceil(source.width() * scale)), max(1, math.ceil(source.height() * scale))
    frames = []
    image = QImage(width, height, QImage.Format.Format_RGB32)
    part = (source.x(), source.y(), source.width(), source.height())
    window = None
    try:
        for k, step in enumerate(steps):
            options.report(0.9 * k / len(steps), f"frame {k + 1}/{len(steps)}")
            if follow:
                renderer.stepper.set_step(step)
                window = follow_rect(renderer.scene, renderer.scene.current, view_w, view_h, window, part)
                frames.append(_gif_frame(renderer, image, width, height, QRectF(*window), None))
            else:
                frames.append(_gif_frame(renderer, image, width, height, source, step))
    finally:
        renderer.close()
    options.report(0.92, "writing GIF")
    durations = [GIF_FRAME_MS] * (len(frames) - 1) + [GIF_LAST_FRAME_MS]
    with open(path, "wb") as fh:
        frames[0].save(fh, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                       optimize=False, disposal=1)


def _gif_frame(renderer: _SceneRenderer, image: QImage, width: int, height: int, source: QRectF, step: int | None):
    from PIL import Image

    image.fill(renderer.background)
    painter = QPainter(image)
    try:
        renderer.render_to(painter, QRectF(0, 0, width, height), source, step=step)
    finally:
        painter.end()
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    frame = Image.frombuffer("RGB", (width, height), bytes(rgb.constBits()), "raw", "RGB", rgb.bytesPerLine(), 1)
    return frame.quantize(colors=255, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
