"""``python -m gradviz.cli``: the command line."""
from .main import run

run()
