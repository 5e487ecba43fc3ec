"""The Lesson dock: a lesson's text and formulas, Back/Next, the prediction box, progress, language.

A view of a `gradviz.lessons.LessonRun`. The lesson runs on its own Qt-free `Session`, opened in a
worker thread (recording, and on a cold cache building the C++ extension, never block the UI); each
step it goes to is mirrored onto the window's session, so the graph moves with the lesson. Prose is
Markdown (``QTextDocument.setMarkdown``), formulas are drawn by matplotlib's mathtext into images,
matrices are small Markdown tables. Chinese text is set in a font that has every CJK glyph.
"""
from __future__ import annotations

import functools
import html
import io
import threading
import weakref

import numpy as np
from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QFont, QFontDatabase, QImage, QTextDocument
from PySide6.QtWidgets import (QComboBox, QDockWidget, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton,
                               QTextBrowser, QVBoxLayout, QWidget)

from gradviz.core.errors import GradvizError
from gradviz.core.session import Session
from gradviz.lessons import LessonRun, Progress, StepView, list_lessons, load_lesson

from . import i18n

__all__ = ["QtLessonDock", "math_image", "matrix_markdown", "cjk_family"]

# the window session's options a lesson's own session takes: its model runs where the window's does
ISOLATION = ("isolate", "timeout", "max_memory_mb", "warm", "checks_max_nodes")

_TEXT = {
    "Lesson": "课程", "Back": "上一步", "Next": "下一步", "Check": "核对", "Loading…": "正在加载…",
    "Step {k} of {n}": "第 {k} 步，共 {n} 步", "Your answer": "你的答案",
    "Choose a lesson": "选择课程", "The check table": "检查表", "all hold": "全部成立",
    "checks do not hold": "检查未全部成立",
}


def _t(text: str) -> str:
    return _TEXT.get(text, text) if i18n.language() == "zh" else text


def cjk_family() -> str | None:
    """A font family that has Simplified Chinese glyphs (WenQuanYi Micro Hei, Noto Sans CJK, ...), if any."""
    families = QFontDatabase.families(QFontDatabase.WritingSystem.SimplifiedChinese)
    for want in ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC"):
        if want in families:
            return want
    return families[0] if families else None


def math_image(formula: str, dpi: int = 110) -> QImage:
    """`formula` (mathtext without the ``$``) drawn by matplotlib into an image."""
    from matplotlib import mathtext  # imported on first use: matplotlib costs start-up time

    buf = io.BytesIO()
    mathtext.math_to_image(f"${formula}$", buf, dpi=dpi, format="png")
    img = QImage()
    img.loadFromData(buf.getvalue(), "PNG")
    return img


def matrix_markdown(caption: str, value) -> str:
    """A small Markdown table of a scalar, vector or matrix (larger ones are cut to 8x8)."""
    arr = np.asarray(value, dtype=np.float64) if value is not None else None
    if arr is None:
        return f"**{caption}** = None"
    if arr.ndim == 0:
        return f"**{caption}** = {float(arr):.4f}"
    rows = arr.reshape(1, -1) if arr.ndim == 1 else arr.reshape(arr.shape[0], -1)
    cut = rows[:8, :8]
    head = "| " + " | ".join([f"**{caption}** {tuple(arr.shape)}"] + [str(j) for j in range(cut.shape[1])]) + " |"
    sep = "|" + "---|" * (cut.shape[1] + 1)
    body = ["| " + " | ".join([str(i)] + [f"{v:.4f}" for v in row]) + " |" for i, row in enumerate(cut)]
    return "\n".join([head, sep, *body])


class _Bridge(QObject):
    """Carries a worker thread's result to the GUI thread (a queued signal)."""

    done = Signal(object, object)


class QtLessonDock(QDockWidget):
    """The Lesson dock.

    Parameters
    ----------
    session : Session, optional
        The window's session: the graph it shows follows the lesson's steps.
    parent : QWidget, optional
    """

    def __init__(self, session: Session | None = None, parent=None):
        super().__init__(_t("Lesson"), parent)
        self.setObjectName("lesson_dock")
        self.view_session = session
        self.run: LessonRun | None = None
        self.view: StepView | None = None
        self.progress = Progress()
        self._bridge = _Bridge()
        self._bridge.done.connect(self._on_loaded)
        self._answered: set[int] = set()
        self._mirrored: tuple | None = None

        body = QWidget(self)
        lay = QVBoxLayout(body)
        top = QHBoxLayout()
        self.lessons = QComboBox()
        self.lessons.setObjectName("lesson_list")
        for les in list_lessons():
            self.lessons.addItem(les.title(i18n.language()), les.name)
        self.lessons.activated.connect(self._on_pick)
        self.language = QComboBox()
        for code, label in i18n.LANGUAGES.items():
            self.language.addItem(label, code)
        self.language.setCurrentIndex(max(0, self.language.findData(i18n.language())))
        self.language.activated.connect(self._on_language_picked)
        top.addWidget(self.lessons, 1)
        top.addWidget(self.language)
        lay.addLayout(top)
        self.title = QLabel()
        self.title.setObjectName("lesson_title")
        self.title.setWordWrap(True)
        f = self.title.font()
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.15)
        self.title.setFont(f)
        lay.addWidget(self.title)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        lay.addWidget(self.bar)
        self.text = QTextBrowser()
        self.text.setObjectName("lesson_text")
        self.text.setOpenExternalLinks(False)
        lay.addWidget(self.text, 1)
        # the prediction box
        self.question = QLabel()
        self.question.setWordWrap(True)
        self.question.setTextFormat(Qt.TextFormat.MarkdownText)
        self.answer = QLineEdit()
        self.answer.setPlaceholderText(_t("Your answer"))
        self.answer.returnPressed.connect(self._on_check)
        self.choices = QComboBox()
        self.check = QPushButton(_t("Check"))
        self.check.clicked.connect(self._on_check)
        self.feedback = QLabel()
        self.feedback.setWordWrap(True)
        self.feedback.setObjectName("lesson_feedback")
        row = QHBoxLayout()
        row.addWidget(self.answer, 1)
        row.addWidget(self.choices, 1)
        row.addWidget(self.check)
        lay.addWidget(self.question)
        lay.addLayout(row)
        lay.addWidget(self.feedback)
        nav = QHBoxLayout()
        self.back = QPushButton(_t("Back"))
        self.back.clicked.connect(self.go_back)
        self.next = QPushButton(_t("Next"))
        self.next.clicked.connect(self.go_next)
        nav.addWidget(self.back)
        nav.addStretch(1)
        nav.addWidget(self.next)
        lay.addLayout(nav)
        self.setWidget(body)
        self._show_prediction(None)
        self._set_enabled(False)
        # follow the UI language while this dock lives (the signal must not keep a deleted dock)
        ref = weakref.ref(self)

        def on_language(code: str) -> None:
            dock = ref()
            if dock is not None:
                dock._on_language_changed(code)

        i18n.language_changed.connect(on_language)
        self.destroyed.connect(functools.partial(i18n.language_changed.disconnect, on_language))
        self._apply_font()

    @classmethod
    def attach(cls, window) -> "QtLessonDock":
        """A Lesson dock on the right of `window`, following `window.session`."""
        dock = cls(getattr(window, "session", None), window)
        right = Qt.DockWidgetArea.RightDockWidgetArea
        others = [d for d in window.findChildren(QDockWidget)
                  if d is not dock and d.isVisible() and not d.isFloating() and window.dockWidgetArea(d) == right]
        window.addDockWidget(right, dock)
        if others:  # a tab beside the first dock on the right: the lesson's text gets its full height
            window.tabifyDockWidget(others[0], dock)
        return dock

    # -- loading ------------------------------------------------------------------------------
    def open_lesson(self, name: str, wait: bool = False) -> None:
        """Load lesson `name` (or a folder): record its target in a worker, then show its first step."""
        try:
            lesson = load_lesson(name)
        except GradvizError as exc:
            self._show_error(exc.message)
            return
        i = self.lessons.findData(lesson.name)
        if i >= 0:
            self.lessons.setCurrentIndex(i)
        self.title.setText(lesson.title(self._lang(lesson)))
        self.text.setPlainText(_t("Loading…"))
        self._set_enabled(False)
        lang = self._lang(lesson)

        bridge = self._bridge
        # the lesson's model runs as the window's does (in a child process per run, with its limits)
        view = self.view_session
        isolation = {k: view.options[k] for k in ISOLATION if view is not None and k in view.options}

        def work():
            try:
                result = (LessonRun(lesson, lang, session=Session(**isolation)).open(), None)
            except GradvizError as exc:
                result = (None, exc.message)
            except Exception as exc:  # noqa: BLE001 - shown as one line, never a trace
                result = (None, f"{type(exc).__name__}: {exc}")
            try:
                bridge.done.emit(*result)
            except RuntimeError:  # the dock was closed meanwhile: nobody to tell
                pass

        self._worker = threading.Thread(target=work, name="gradviz-lesson", daemon=True)
        self._worker.start()
        if wait:
            self._worker.join()

    def _lang(self, lesson) -> str:
        lang = i18n.language()
        return lang if lang in lesson.texts else next(iter(lesson.texts))

    def _on_loaded(self, run, error) -> None:
        if error is not None:
            self._show_error(error)
            return
        self.run = run
        self._answered = set()
        rec = self.progress.lesson(run.lesson.name)
        ids = [s.id for s in run.steps]
        start = ids.index(rec["step"]) if rec.get("step") in ids and not rec.get("finished") else 0
        self._set_enabled(True)
        self.go(start)

    # -- moving -------------------------------------------------------------------------------
    def go(self, k: int) -> None:
        """Show lesson step `k` and move the graph to its event."""
        if self.run is None:
            return
        try:
            self.view = self.run.go(k)
        except GradvizError as exc:
            self._show_error(exc.message)
            return
        self.progress.visit(self.run.lesson.name, self.view.id)
        if self.view.index == len(self.run) - 1:
            self.progress.finish(self.run.lesson.name)
        self.progress.save()
        self._mirror()
        self._render()

    def go_next(self) -> None:
        if self.run is not None:
            self.go(self.run.position + 1)

    def go_back(self) -> None:
        if self.run is not None:
            self.go(self.run.position - 1)

    def _mirror(self) -> None:
        """Move the window's session to the lesson's step (showing the lesson's recording when its parameters changed)."""
        s = self.view_session
        if s is None or self.run is None:
            return
        key = (self.run.lesson.resolved_target(), tuple(sorted(self.run.session.params.items())))
        if self._mirrored != key:
            # the lesson's own recording of this part, shown as it is: the model is not run a second time
            s.restore(self.run.session.snapshot())
            self._mirrored = key
        s.step_to(self.view.timeline_step)

    # -- drawing ------------------------------------------------------------------------------
    def _blocks_markdown(self, blocks, images: dict, tag: str) -> str:
        parts = []
        for i, b in enumerate(blocks):
            if b.kind == "text":
                parts.append(b.text)
            elif b.kind == "math":
                url = f"mathtext://{tag}-{i}.png"
                try:
                    images[url] = math_image(b.text)
                    parts.append(f"![formula]({url})")
                except (ValueError, RuntimeError):  # mathtext could not parse it: show the source
                    parts.append(f"`{b.text}`")
            else:
                parts.append(matrix_markdown(b.caption, b.value))
        return "\n\n".join(parts)

    def _render(self) -> None:
        run, view = self.run, self.view
        self.title.setText(f"{run.text.title} — {view.title}")
        self.bar.setRange(0, len(run))
        self.bar.setValue(view.index + 1)
        self.bar.setFormat(_t("Step {k} of {n}").format(k=view.index + 1, n=len(run)))
        doc = self.text.document()
        images: dict = {}
        md = [f"*{html.escape(view.event)}*", self._blocks_markdown(view.blocks, images, f"s{view.index}")]
        if view.index in self._answered:
            md.append(self._blocks_markdown(run.reveal(view.index), images, f"r{view.index}"))
        if view.checks is not None:
            ok, _notes = run.checks_hold()
            counts = ", ".join(f"{v} {k}" for k, v in view.checks.counts().items())
            md.append(f"**{_t('The check table')}**: {len(view.checks.rows)} ({counts}) — "
                      f"{_t('all hold') if ok else _t('checks do not hold')}")
            md.append(_checks_markdown(view.checks))
        doc.setMarkdown("\n\n".join(md))
        for url, img in images.items():  # after setMarkdown, which clears the document's resources
            doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(url), img)
        doc.markContentsDirty(0, doc.characterCount())
        self._apply_font()
        self.back.setEnabled(view.index > 0)
        self.next.setEnabled(view.index < len(run) - 1)
        self._show_prediction(view)

    def _show_prediction(self, view: StepView | None) -> None:
        asks = view is not None and view.kind is not None
        for w in (self.question, self.check, self.feedback):
            w.setVisible(asks)
        self.answer.setVisible(asks and view.kind != "choice")
        self.choices.setVisible(asks and view.kind == "choice")
        self.feedback.clear()
        if not asks:
            return
        self.question.setText("\n\n".join(b.text for b in view.question if b.kind == "text"))
        self.answer.clear()
        self.choices.clear()
        for i, c in enumerate(view.choices, 1):
            self.choices.addItem(f"{i}. {c}", i)
        prev = self.progress.lesson(self.run.lesson.name)["answers"].get(view.id)
        if view.index in self._answered and prev:
            self._feedback(self.run.grade(view.index, prev["given"]))

    def _on_check(self) -> None:
        view = self.view
        if self.run is None or view is None or view.kind is None:
            return
        given = str(self.choices.currentData()) if view.kind == "choice" else self.answer.text()
        verdict = self.run.grade(view.index, given)
        self.progress.answer(self.run.lesson.name, view.id, given, verdict.correct)
        self.progress.save()
        self._answered.add(view.index)
        self._render()
        self._feedback(verdict)

    def _feedback(self, verdict) -> None:
        color = "#2b8a3e" if verdict.correct else "#c92a2a"
        mark = "✓" if verdict.correct else "✗"
        self.feedback.setText(f"<b style='color:{color}'>{mark} {html.escape(verdict.message)}</b>")

    def _show_error(self, message: str) -> None:
        self.text.setPlainText(message)
        self._set_enabled(False)

    def _set_enabled(self, on: bool) -> None:
        for w in (self.back, self.next, self.check, self.answer, self.choices):
            w.setEnabled(on)

    def _apply_font(self) -> None:
        """Chinese text in a CJK font (so no glyph is an empty box); the default font otherwise."""
        family = cjk_family() if i18n.language() == "zh" else None
        for w in (self.text, self.title, self.question, self.feedback, self.lessons, self.back, self.next,
                  self.check, self.bar):
            f = QFont(w.font())
            if family:
                f.setFamilies([family])
            else:
                f.setFamilies([QFont().family()])
            w.setFont(f)
        if family:
            self.text.document().setDefaultFont(self.text.font())

    # -- language -----------------------------------------------------------------------------
    def _on_pick(self, index: int) -> None:
        self.open_lesson(self.lessons.itemData(index))

    def _on_language_picked(self, index: int) -> None:
        i18n.set_language(self.language.itemData(index))  # the whole UI follows

    def _on_language_changed(self, code: str) -> None:
        self.setWindowTitle(_t("Lesson"))
        self.back.setText(_t("Back"))
        self.next.setText(_t("Next"))
        self.check.setText(_t("Check"))
        self.answer.setPlaceholderText(_t("Your answer"))
        self.language.setCurrentIndex(max(0, self.language.findData(code)))
        for i in range(self.lessons.count()):
            try:
                self.lessons.setItemText(i, load_lesson(self.lessons.itemData(i)).title(code))
            except GradvizError:
                pass
        self._apply_font()
        if self.run is not None and code in self.run.lesson.texts:
            self.run.set_language(code)
            if self.view is not None:
                self.view = self.run.view(self.view.index)
                self._render()


def _checks_markdown(table) -> str:
    """The check table as a Markdown table (kind, what, max abs error, result)."""
    rows = ["| check | what | max abs err | result |", "|---|---|---|---|"]
    for r in table.rows:
        err = "" if r.max_abs is None else f"{r.max_abs:.2e}"
        what = r.what.replace("|", "/")
        rows.append(f"| {r.kind} | {what} | {err} | {r.status.upper() if r.status == 'fail' else r.status} |")
    return "\n".join(rows)
