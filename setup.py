"""Packages of gradviz; everything else is in pyproject.toml.

The compiled backends' sources stay in the top-level ``kernels/`` folder; a wheel carries them as
the data package ``gradviz._kernels``, which gradviz/core/extension.py finds through
``importlib.resources``. pyproject.toml alone cannot add a mapped package to the ones it finds.
"""
from setuptools import find_namespace_packages, setup

setup(
    # as pyproject's packages.find did (namespace folders too: the lessons' data), plus the kernels
    packages=find_namespace_packages(include=["gradviz*"]) + ["gradviz._kernels"],
    package_dir={"gradviz._kernels": "kernels"},
)
