import pytest


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    """Every test keeps its lesson progress in its own folder, never in the user's."""
    monkeypatch.setenv("GRADVIZ_CONFIG_DIR", str(tmp_path / "config"))
