"""The repository layout keeps the standard library's ``operator`` module importable, and the
packages depend one way: the trainer and the operator use tensorone, never the reverse, and the
operator never needs the trainer's libraries."""

import ast
import importlib
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.unimportable import run_without

REPO = Path(__file__).resolve().parents[1]
# The trainer, and the libraries of its extras (trainer, tracking): what the operator image and a
# machine with only the SDK do not have.
TRAINER_ONLY = (
    *("trainer", "torch", "transformers", "peft", "datasets", "safetensors", "accelerate"),
    *("mlflow", "tensorboardX", "wandb"),
)
# Each package's folder and the packages it never imports: tensorone is imported by the others.
NEVER_IMPORTED = {
    "tensorone": (REPO / "tensorone", (*TRAINER_ONLY, "tensorone_operator")),
    "tensorone_operator": (REPO / "operator" / "tensorone_operator", TRAINER_ONLY),
}


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


def imported_names(source: Path) -> list[tuple[int, str]]:
    """The line and dotted name of everything a module imports absolutely, lazy imports included:
    ``from a.b import c`` is ``a.b.c``, whether c is a module or a name in a.b."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return sorted(found)


def imported_packages(source: Path) -> list[tuple[int, str]]:
    """The line and top-level package of every absolute import in a module, lazy imports included."""
    return sorted({(line, name.partition(".")[0]) for line, name in imported_names(source)})


@pytest.mark.parametrize("package", sorted(NEVER_IMPORTED))
def test_no_module_imports_what_its_package_must_not(package: str) -> None:
    folder, never = NEVER_IMPORTED[package]
    sources = sorted(folder.rglob("*.py"))
    assert len(sources) > 5, f"no modules found under {folder}"
    offending = [
        f"{source.relative_to(REPO)}:{line} imports {name}"
        for source in sources
        for line, name in imported_packages(source)
        if name in never
    ]
    assert offending == []


def test_the_api_never_imports_the_command_line() -> None:
    """The command line (manifest files, the verbs) uses the API types and admission, never the
    reverse: the SDK, the operator and the trainer use tensorone.api without the CLI."""
    sources = sorted((REPO / "tensorone" / "api").rglob("*.py"))
    assert len(sources) > 5, "no modules found under tensorone/api"
    offending = [
        f"{source.relative_to(REPO)}:{line} imports {name}"
        for source in sources
        for line, name in imported_names(source)
        if name == "tensorone.cli" or name.startswith("tensorone.cli.")
    ]
    assert offending == []


def test_the_scan_sees_every_kind_of_import(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        "import os, torch.nn\nfrom trainer.run import run\nfrom . import sibling\n"
        "def lazy():\n    import peft\n    from transformers import AutoModel\n"
    )
    assert imported_packages(module) == [(1, "os"), (1, "torch"), (2, "trainer"), (5, "peft"), (6, "transformers")]
    assert imported_names(module) == [
        (1, "os"),
        (1, "torch.nn"),
        (2, "trainer.run.run"),
        (5, "peft"),
        (6, "transformers.AutoModel"),
    ]


@pytest.mark.parametrize("package", sorted(NEVER_IMPORTED))
def test_every_module_imports_where_the_trainer_is_not_installed(package: str, tmp_path: Path) -> None:
    ran = run_without(
        NEVER_IMPORTED[package][1],
        f"""
        import importlib, pkgutil
        import {package}

        for module in pkgutil.walk_packages({package}.__path__, "{package}."):
            if not module.name.endswith(".__main__"):  # runs the program
                importlib.import_module(module.name)
        """,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
