"""The lessons never import Qt: a lesson runs, checks and validates with PySide6 blocked."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_lessons_run_with_pyside6_blocked(tmp_path):
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        from gradviz.cli import main
        assert main(["lesson", "--list"]) == 0
        assert main(["lesson", "reusing-a-layer", "--check", "--lang", "zh"]) == 0
        bad = [m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6")]
        assert not bad, bad
        print("no-qt ok")
    """)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "GRADVIZ_CONFIG_DIR": str(tmp_path / "config")}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env=env, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and "no-qt ok" in p.stdout, p.stdout[-2000:] + p.stderr[-4000:]
