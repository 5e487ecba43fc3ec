"""Export a recording to a file; the format comes from the file's extension.

Exporters are registered with the `exporter` decorator. The core registers the data formats
(``.json``, ``.dot``, ``.graphml``, ``.gradviz``); other packages (the Qt layer's ``.png``, ``.svg``,
``.pdf``, ``.gif``) register theirs through the ``gradviz.exporters`` entry-point group, loaded
lazily on first use. A plugin that fails to load gives a warning, never a crash.

Every export is atomic: the exporter writes a temporary file in the target's folder, which replaces
the target only when complete; a failure or a cancel leaves the old file as it was.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable


from .atomic import atomic_path
from .errors import Cancelled, GradvizError
from .recording import GraphNode, Recording, io_function
from .sandbox import gc_paused
from .scene import THEMES, Scene, build_scene, get_theme
from .schema import scalar_fields
from .serialize import recording_to_json
from .storage import write_recording
from .timeline import StepState, Timeline

__all__ = ["exporter", "export", "ExportOptions", "Exporter", "exporters", "load_plugins", "register",
           "repr_svg", "node_style", "THEMES", "LAYOUTS", "PLUGIN_GROUP", "IMAGE_SUFFIXES"]

PLUGIN_GROUP = "gradviz.exporters"
LAYOUTS = ("lr", "tb")
IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".gif")
MAX_SCALE = 16.0

_DOT_SHAPES = {"op": "box", "custom": "box3d", "leaf": "ellipse", "input": "note"}


@dataclass
class ExportOptions:
    """What to draw and how: the step, layout, theme and scale, plus progress and cancel hooks.

    Attributes
    ----------
    step : int
        The timeline step to show (resolved from ``step`` or ``phase``; default the last step).
    phase : str or None
        The phase asked for, if any (``"forward"``, ``"backward"``, ``"end"``).
    layout : str
        ``"lr"`` (left to right, the loss on the right) or ``"tb"`` (top to bottom, the loss at the bottom).
    theme : str
        ``"light"`` or ``"dark"``.
    scale : float or None
        Size factor for images (1.0 = the app's size at 100 % zoom); None lets the exporter choose a
        legible one (`gradviz.core.pages`).
    extra : dict
        Options only some exporters read (``region="visible"`` with a view, ``max_frames``...).
    """

    step: int
    phase: str | None = None
    layout: str = "lr"
    theme: str = "light"
    scale: float | None = 1.0
    progress: Callable[[float, str], None] | None = None
    cancel: Callable[[], bool] | None = None
    extra: dict = field(default_factory=dict)
    timeline: Timeline | None = field(default=None, repr=False)
    messages: list = field(default_factory=list)

    def state(self, step: int | None = None) -> StepState:
        """The timeline state at `step` (default: the chosen step)."""
        return self.timeline.state_at(self.step if step is None else step)

    def report(self, fraction: float, message: str = "") -> None:
        """Pass progress on to the caller, and stop with `Cancelled` when the caller asks."""
        if self.progress is not None:
            self.progress(max(0.0, min(1.0, fraction)), message)
        self.check_cancel()

    def check_cancel(self) -> None:
        """Raise `Cancelled` if the caller's cancel hook says so."""
        if self.cancel is not None and self.cancel():
            raise Cancelled()

    def note(self, message: str) -> None:
        """Record a message for the user (a cap that applied, frames that were sampled)."""
        self.messages.append(message)
        if self.progress is not None:
            self.progress(-1.0, message)

    @property
    def colors(self) -> dict:
        """The theme's colours (the one table of `gradviz.core.scene.theme`)."""
        return get_theme(self.theme)

    def scene(self, step: int | None = None) -> Scene:
        """The `Scene` of the chosen step without positions: the labels, styles and flow states every
        picture of this step shows."""
        return build_scene(self.timeline.rec, None, self.state(step), self.theme)


@dataclass(frozen=True)
class Exporter:
    """One registered format."""

    suffix: str
    write: Callable[[Recording, Path, ExportOptions], None]
    description: str
    origin: str = ""


_EXPORTERS: dict[str, Exporter] = {}
_PLUGINS_LOADED = False


def exporter(suffix: str, description: str) -> Callable:
    """Register ``write(rec, path, options)`` as the exporter for files ending in `suffix`.

    The function writes the whole file at `path` (a temporary path: `export` makes the write atomic).
    A later registration for the same suffix replaces the earlier one.
    """
    suffix = suffix.lower()
    if not suffix.startswith("."):
        raise ValueError(f"exporter suffix {suffix!r} must start with a dot")

    def deco(fn: Callable) -> Callable:
        _EXPORTERS[suffix] = Exporter(suffix, fn, description, getattr(fn, "__module__", ""))
        return fn

    return deco


def load_plugins(entry_points: Iterable | None = None) -> list[str]:
    """Load the exporter plugins of the ``gradviz.exporters`` entry-point group (once).

    Parameters
    ----------
    entry_points : iterable of importlib.metadata.EntryPoint, optional
        Load these instead of the installed ones (and always, even if plugins were loaded before).

    Returns
    -------
    list of str
        Warnings for plugins that failed (each also issued with `warnings.warn`).
    """
    global _PLUGINS_LOADED
    if entry_points is None:
        if _PLUGINS_LOADED:
            return []
        _PLUGINS_LOADED = True
        from importlib.metadata import entry_points as installed

        try:
            entry_points = list(installed(group=PLUGIN_GROUP))
        except Exception as exc:  # noqa: BLE001 - broken metadata must not stop an export
            entry_points = []
            warnings.warn(f"gradviz: cannot list exporter plugins: {exc}", RuntimeWarning, stacklevel=2)
    problems = []
    for ep in entry_points:
        try:
            hook = ep.load()
            if callable(hook):
                hook()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is a warning, not a crash
            text = f"gradviz: exporter plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
            problems.append(text)
            warnings.warn(text, RuntimeWarning, stacklevel=2)
    return problems


def exporters() -> dict[str, Exporter]:
    """Every registered format by suffix (plugins loaded first)."""
    load_plugins()
    return dict(sorted(_EXPORTERS.items()))


def register() -> None:
    """Entry point of the core's own formats: they register when this module is imported."""


def resolve_step(timeline: Timeline, step: int | None, phase: str | None) -> int:
    """The step to show: `step`, or the start of `phase`, or the last step."""
    if step is not None and phase is not None:
        raise GradvizError("give either a step or a phase, not both")
    last = len(timeline) - 1
    if step is not None:
        try:
            step = int(step)
        except (TypeError, ValueError):
            raise GradvizError(f"step {step!r} is not a number") from None
        if step < 0:
            step += len(timeline)
        if not 0 <= step <= last:
            raise GradvizError(f"step {step} is outside this recording's steps 0..{last}",
                               hint="gradviz steps TARGET lists them")
        return step
    if phase is not None:
        try:
            return timeline.phase_start(phase)
        except ValueError:
            raise GradvizError(f"unknown phase {phase!r}", hint="use forward, backward or end") from None
    return last


@io_function("export")
def export(rec: Recording, path: str | os.PathLike, step: int | None = None, phase: str | None = None,
           layout: str = "lr", theme: str = "light", scale: float | None = None,
           progress: Callable[[float, str], None] | None = None, cancel: Callable[[], bool] | None = None,
           **extra: Any) -> Path:
    """Export `rec` to `path`, in the format its extension names, atomically.

    Parameters
    ----------
    rec : Recording
    path : str or os.PathLike
        ``.json``, ``.dot``, ``.graphml``, ``.gradviz`` always; ``.png``, ``.svg``, ``.pdf``, ``.gif``
        with the gui extra.
    step : int, optional
        The timeline step to show (negative counts from the end).
    phase : {"forward", "backward", "end"}, optional
        Show the first step of this phase instead.
    layout : {"lr", "tb"}
    theme : {"light", "dark"}
    scale : float, optional
        Size factor for images, above 0 and at most 16. By default the exporter chooses: 1, or
        smaller to fit its limits, never below a legible 0.75 (labels at least 9 px); a drawing
        too big for that shows a part (images) or takes several pages (PDF).
    progress : callable, optional
        ``progress(fraction, message)``; a fraction of -1 carries a note (a cap that applied).
    cancel : callable, optional
        Polled while exporting; returning True stops with `Cancelled`, leaving no file.
    **extra
        Options for some exporters: images take ``region`` (a QRectF of the drawing), ``around`` (a node
        id or name: the part of the drawing around it), ``steps`` (``"A:B"``: the part the timeline
        steps A..B run), ``rolled`` (fold the uses of a reused module, as the app can), ``fold``
        (``"auto"``, None or layers per row: wrap a long chain into rows), ``proxies`` (False draws a
        shared parameter's every edge), ``whole`` (True: the whole graph legible in one image, a long
        chain folded to fit a square, ``fold="fit"``) and ``precomputed`` (a layout to reuse); PDF takes ``page`` (a
        paper size, ``a4``, ``a3``...: as many pages as a legible drawing needs); GIF takes
        ``max_frames``; ``.gradviz`` takes ``checks`` (a CheckTable to store with the recording).
        Exporters ignore options they do not know.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    GradvizError
        Unknown format, bad options, or a path that cannot be written.
    """
    target = Path(os.fspath(path))
    suffix = target.suffix.lower()
    # the core's own formats need no plugin: load plugins (which may import Qt) only for other suffixes
    found = _EXPORTERS.get(suffix) or exporters().get(suffix)
    if found is None:
        known = ", ".join(exporters())
        hint = f"known formats: {known}"
        if suffix in IMAGE_SUFFIXES:
            hint = f"{suffix} images need the gui extra: pip install 'gradviz[gui]' ({hint})"
        raise GradvizError(f"cannot export to {str(target)!r}: no exporter for {suffix or 'files without an extension'!r}",
                           hint=hint)
    if layout not in LAYOUTS:
        raise GradvizError(f"unknown layout {layout!r}", hint="use lr (left to right) or tb (top to bottom)")
    if theme not in THEMES:
        raise GradvizError(f"unknown theme {theme!r}", hint=f"use one of {', '.join(THEMES)}")
    if scale is not None:
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise GradvizError(f"scale {scale!r} is not a number") from None
        if not 0 < scale <= MAX_SCALE:
            raise GradvizError(f"scale {scale} is outside (0, {MAX_SCALE:g}]")
    # drawing makes hundreds of thousands of short-lived objects: the cycle collector would only slow it
    with gc_paused():
        timeline = Timeline(rec)
        options = ExportOptions(step=resolve_step(timeline, step, phase), phase=phase, layout=layout, theme=theme,
                                scale=scale, progress=progress, cancel=cancel, extra=dict(extra), timeline=timeline)
        options.report(0.0, f"exporting {suffix}")
        with atomic_path(target) as tmp:
            found.write(rec, tmp, options)
            options.check_cancel()
        options.report(1.0, "done")
    return target.absolute()


REPR_MAX_NODES = 3000


@io_function("repr_svg")
def repr_svg(rec: Recording) -> str:
    """The recording's graph as SVG text (a short SVG note when no SVG exporter is installed or the graph
    has more than `REPR_MAX_NODES` nodes, too big to show inline)."""
    found = exporters().get(".svg")
    if found is not None and len(rec.nodes) > REPR_MAX_NODES:
        found = None
        why = f"{len(rec.nodes)} nodes, too many to show inline: rec.export('graph.svg') writes the graph"
    else:
        why = "install gradviz[gui] to see the graph here"
    if found is not None:
        with tempfile.TemporaryDirectory(prefix="gradviz-") as folder:
            out = export(rec, Path(folder) / "graph.svg")
            return out.read_text(encoding="utf-8")
    from xml.sax.saxutils import escape

    note = escape(f"{rec.summary()} ({why})")
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="720" height="24">'
            f'<text x="4" y="16" font-family="sans-serif" font-size="12">{note}</text></svg>')


# ---------------------------------------------------------------------------------------------
# what each node looks like at a step (read from the Scene every drawing paints)

def node_style(rec: Recording, state: StepState, theme: str | dict = "light") -> list[dict]:
    """Per node: its label lines as drawn, kind, fill, outline, status text and whether it is current.

    `theme` is a theme's name (or its colour table, as `ExportOptions.colors` gives).
    """
    scene = build_scene(rec, None, state, theme.get("name", "light") if isinstance(theme, dict) else theme)
    return [_styled(scene, n.id) for n in rec.nodes]


def _styled(scene: Scene, g: int) -> dict:
    st = scene.node_style(g)
    current = g == scene.current
    return {"id": g, "label": "\n".join(scene.lines(g)), "kind": st.kind, "fill": st.fill,
            "outline": scene.theme["current"] if current else st.border, "text": st.text, "current": current,
            "status": st.status_text, "pending": int(scene.pending[g]),
            "badges": "; ".join(b.text for b in scene.badges(g))}


def _caption(rec: Recording, options: ExportOptions) -> str:
    step = options.timeline.steps[options.step]
    return f"{rec.target} · step {step.index}/{len(options.timeline) - 1} · {step.describe(rec)}"


# ---------------------------------------------------------------------------------------------
# the core's formats

@exporter(".json", "the recording as JSON (what gradviz inspect --json prints)")
def _export_json(rec: Recording, path: Path, options: ExportOptions) -> None:
    data = recording_to_json(rec)
    options.report(0.5, "writing JSON")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


@exporter(".gradviz", "a saved recording: open it again with gradviz or load_recording")
def _export_gradviz(rec: Recording, path: Path, options: ExportOptions) -> None:
    # checks=TABLE (export(rec, "r.gradviz", checks=table)) stores a check table with it
    write_recording(rec, path, checks=options.extra.get("checks"), cancel=options.cancel)


def _dot_id(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_attrs(attrs: dict) -> str:
    return "[" + ", ".join(f"{k}={_dot_id(v)}" for k, v in attrs.items() if v is not None) + "]"


@exporter(".dot", "Graphviz source: nodes with labels, kinds as shapes and colours, edges with slots")
def _export_dot(rec: Recording, path: Path, options: ExportOptions) -> None:
    # labels and colours come from the step's Scene: what the app and the images draw
    scene = options.scene()
    th = scene.theme
    lines = ["digraph gradviz {",
             "  " + "graph " + _dot_attrs({"rankdir": "LR" if options.layout == "lr" else "TB",
                                          "bgcolor": scene.background, "fontcolor": th["text"],
                                          "label": _caption(rec, options), "labelloc": "t",
                                          "fontname": "DejaVu Sans", "step": str(options.step),
                                          "theme": scene.theme_name}) + ";",
             "  node " + _dot_attrs({"style": "filled", "fontname": "DejaVu Sans", "fontcolor": th["text"]}) + ";",
             "  edge " + _dot_attrs({"fontname": "DejaVu Sans", "fontsize": "10", "fontcolor": th["text"]}) + ";"]
    for n in rec.nodes:
        if (n.id & 1023) == 1023:
            options.report(0.8 * n.id / len(rec.nodes), "writing nodes")
        st = _styled(scene, n.id)
        style = "filled,dashed" if scene.node_style(n.id).dashed else None
        attrs = {"label": st["label"], "shape": _DOT_SHAPES.get(n.kind, "box"), "fillcolor": st["fill"],
                 "color": st["outline"], "fontcolor": st["text"], "penwidth": "3" if st["current"] else "1",
                 "style": style, "kind": n.kind, "status": st["status"], "name": n.name,
                 "xlabel": st["badges"] or None}
        if n.tensor is not None:
            attrs["tooltip"] = f"{tuple(n.tensor.shape)} {n.tensor.dtype}"
        lines.append(f"  n{n.id} {_dot_attrs(attrs)};")
    flow_text = {(f.sender, f.receiver, f.slot): f.text for f in scene.flowing}
    for k, (s, d, slot) in enumerate(rec.edges):
        row = int(scene.edge_of[k])
        hot = (s, d, slot) in flow_text
        style = scene.edge_styles["flowing"] if hot else scene.edge_style(row)
        lines.append(f"  n{s} -> n{d} " + _dot_attrs({
            "label": f"{slot}: {flow_text[(s, d, slot)]}" if hot else str(slot), "slot": str(slot), "flow": "grad",
            "key": str(slot), "state": "flowing" if hot else ("done" if scene.edge_state[row] else "idle"),
            "color": style.color, "fontcolor": scene.flow_text if hot else None,
            "penwidth": "2.5" if hot else "1"}) + ";")
    for s, d, pos in rec.input_edges:
        lines.append(f"  n{s} -> n{d} " + _dot_attrs({
            "label": f"in {pos}", "slot": str(pos), "flow": "input", "key": f"input {pos}",
            "style": "dashed", "color": scene.edge_styles["input"].color}) + ";")
    lines.append("}")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


_GRAPHML_FIELDS = tuple(f for f in scalar_fields(GraphNode) if f.name != "id")


@exporter(".graphml", "GraphML for graph tools (networkx, Gephi, yEd); list attributes as text")
def _export_graphml(rec: Recording, path: Path, options: ExportOptions) -> None:
    scene = options.scene()
    import networkx as nx

    g = nx.MultiDiGraph(target=rec.target, step=options.step, layout=options.layout, theme=scene.theme_name)
    for n in rec.nodes:
        st = _styled(scene, n.id)
        # the node's data: every scalar field of the one schema (the id is the GraphML node's id);
        # then label and colours as drawn at this step (the Scene's)
        attrs = {f.name: getattr(n, f.name) for f in _GRAPHML_FIELDS}
        attrs.update({"label": st["label"], "status": st["status"], "current": st["current"],
                      "pending": st["pending"], "fill": st["fill"], "outline": st["outline"],
                      "text_color": st["text"], "badges": st["badges"] or None})
        if n.tensor is not None:
            attrs["shape"] = str(list(n.tensor.shape))
            attrs["dtype"] = n.tensor.dtype
        if n.saved:
            attrs["saved"] = ", ".join(n.saved)
        g.add_node(n.id, **{k: v for k, v in attrs.items() if v is not None})
    flow_text = {(f.sender, f.receiver, f.slot): f.text for f in scene.flowing}
    for k, (s, d, slot) in enumerate(rec.edges):
        row = int(scene.edge_of[k])
        hot = (s, d, slot) in flow_text
        style = scene.edge_styles["flowing"] if hot else scene.edge_style(row)
        extra = {"gradient": flow_text[(s, d, slot)]} if hot else {}
        g.add_edge(s, d, key=f"grad {slot}", slot=slot, flow="grad", flowing=hot, color=style.color,
                   state="flowing" if hot else ("done" if scene.edge_state[row] else "idle"), **extra)
    for s, d, pos in rec.input_edges:
        g.add_edge(s, d, key=f"input {pos}", slot=pos, flow="input", flowing=False,
                   color=scene.edge_styles["input"].color, state="idle")
    options.report(0.5, "writing GraphML")
    nx.write_graphml(g, path)
