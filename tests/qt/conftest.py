"""Qt test set-up: offscreen platform, isolated settings, and Qt warnings that fail the test."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ.setdefault("QT_QPA_OFFSCREEN_SCREEN_SIZE", "1600x1000")

import pytest  # noqa: E402
from PySide6.QtCore import QSettings, QtMsgType, qInstallMessageHandler  # noqa: E402

# Messages the offscreen platform itself prints; they say nothing about gradviz.
ALLOWED = (
    "This plugin does not support propagateSizeHints()",  # offscreen: no window manager to tell
    "This plugin does not support raise()",               # offscreen: no window stacking
    "This plugin does not support grabbing the keyboard",  # offscreen: no input devices
)

_messages: list[str] = []


def _handler(mode, context, message):
    if mode in (QtMsgType.QtDebugMsg, QtMsgType.QtInfoMsg):
        return
    if any(message.startswith(a) for a in ALLOWED):
        return
    _messages.append(f"{mode.name}: {message}")


qInstallMessageHandler(_handler)


@pytest.fixture(autouse=True)
def qt_messages_fail():
    """Fail the test when Qt printed a warning that is not on the allow-list.

    Installed per test (after pytest-qt's own handler) so ours is the one Qt calls.
    """
    _messages.clear()
    previous = qInstallMessageHandler(_handler)
    yield _messages
    qInstallMessageHandler(previous)
    bad = list(_messages)
    _messages.clear()
    assert not bad, "Qt warnings:\n" + "\n".join(bad)


@pytest.fixture
def settings(tmp_path):
    """Settings in a temporary file: tests never read or write the user's."""
    return QSettings(str(tmp_path / "gradviz.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    """A main window (shown, no model yet) that is shut down cleanly after the test."""
    from gradviz.qt import i18n
    from gradviz.core.session import Session
    from gradviz.qt.app import QtMainWindow

    i18n.set_language("en")
    win = QtMainWindow(Session(), settings=settings)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.shutdown()
    i18n.set_language("en")


def open_and_wait(qtbot, win, target, params=None, timeout=600000):
    """Record `target` in `win` and wait until it is shown (or failed).

    The timeout only guards against a hang: the first model with a backend list builds the compiled
    extension in the worker (a minute or more on a cold cache and a loaded machine).
    """
    win.open_target(target, params or {})
    qtbot.waitUntil(lambda: not win.is_busy(), timeout=timeout)
