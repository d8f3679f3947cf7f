"""The repository layout keeps the standard library's ``operator`` module importable."""

import importlib
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_operator_folder_is_not_a_package() -> None:
    assert (REPO / "operator" / "tensorone_operator" / "__init__.py").exists()
    assert not (REPO / "operator" / "__init__.py").exists()
    assert not (REPO / "operator.py").exists()


def test_stdlib_operator_module_is_imported_from_the_repo_root() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    # A fresh interpreter started in the repo root with the root first on sys.path, as `python -m`
    # and pytest's rootdir insertion do.
    code = "import sys; sys.path.insert(0, '.'); import operator; print(operator.__file__); operator.itemgetter"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).resolve().parent == stdlib


def test_operator_package_imports_by_its_own_name() -> None:
    module = importlib.import_module("tensorone_operator")
    assert Path(module.__file__ or "").resolve().is_relative_to(REPO / "operator")
