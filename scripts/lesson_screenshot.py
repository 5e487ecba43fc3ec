"""Open the app with the Lesson dock in Chinese, go to a step, answer its prediction, save a screenshot.

Usage: python scripts/lesson_screenshot.py OUT.png [LESSON] [STEP_ID] [LANG]

Needs a display (run under Xvfb). Prints one JSON line: the font family of the dock's text, every
character the dock shows, and those the font lacks (``missing``: should be empty).
"""
from __future__ import annotations

import json
import sys
import time


def shown_text(dock) -> str:
    """Every character the dock shows: its text, title, question, feedback, buttons, progress."""
    parts = [dock.text.document().toPlainText(), dock.title.text(), dock.question.text(), dock.back.text(),
             dock.next.text(), dock.check.text(), dock.bar.text(), dock.windowTitle()]
    from PySide6.QtGui import QTextDocument

    fb = QTextDocument()
    fb.setHtml(dock.feedback.text())
    parts.append(fb.toPlainText())
    return "".join(parts)


def main(argv: list[str]) -> int:
    out = argv[0]
    name = argv[1] if len(argv) > 1 else "reusing-a-layer"
    step_id = argv[2] if len(argv) > 2 else "accumulate"
    lang = argv[3] if len(argv) > 3 else "zh"
    import os
    import tempfile

    from PySide6.QtCore import QSettings
    from PySide6.QtGui import QFontMetrics

    from gradviz.core.session import Session
    from gradviz.lessons import load_lesson
    from gradviz.qt import i18n
    from gradviz.qt.app import _app, build_window

    app = _app()
    settings = QSettings(os.path.join(tempfile.mkdtemp(), "gradviz.ini"), QSettings.Format.IniFormat)
    settings.setValue("language", lang)
    lesson = load_lesson(name)
    session = Session()
    win = build_window(lesson.resolved_target(), lesson.params, settings=settings, session=session)
    i18n.set_language(lang)
    win.resize(1500, 950)
    win.show()
    dock = win.show_lessons()
    dock.setMinimumWidth(620)
    dock.open_lesson(name, wait=True)
    deadline = time.time() + 120
    while dock.run is None and time.time() < deadline:
        app.processEvents()
        time.sleep(0.01)
    if dock.run is None:
        print(json.dumps({"error": dock.text.toPlainText()}))
        return 1
    k = [s.id for s in dock.run.steps].index(step_id)
    dock.go(k)
    if dock.view.kind is not None:
        dock.answer.setText(dock.run.answer_text(k))
        dock._on_check()
    while win.is_busy() and time.time() < deadline:
        app.processEvents()
        time.sleep(0.01)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.01)
    win.grab().save(out)
    text = shown_text(dock)
    family = dock.text.font().family()
    fm = QFontMetrics(dock.text.font())
    # U+FFFC stands for an image (a formula) in the document's plain text: not a glyph
    chars = sorted({c for c in text if not c.isspace() and c != "\ufffc"})
    missing = [c for c in chars if not fm.inFontUcs4(ord(c))]
    cjk = [c for c in chars if ord(c) >= 0x3000]
    print(json.dumps({"family": family, "chars": "".join(chars), "cjk": len(cjk), "missing": "".join(missing),
                      "step": dock.view.id, "session_step": session.stepper.index if session.stepper else None,
                      "timeline_step": dock.view.timeline_step, "feedback": dock.feedback.text()},
                     ensure_ascii=False))
    win.close()
    win.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
