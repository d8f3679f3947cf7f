"""Regenerate the dependency locks from pyproject.toml (`make lock`).

Every lock pins each package, direct and transitive, to one version with the hashes of its files,
for CPython 3.11 on Linux x86_64:

    build.txt     what builds the project's wheel ([build-system] requires)
    dev.txt       development machines and CI: every extra, with the CPU build of torch
    operator.txt  the operator image: the `operator` extra (no torch)
    gateway.txt   the gateway image: the `gateway` extra (no torch)
    trainer.txt   the trainer image: the `trainer` and `tracking` extras, with PyPI's torch (a CUDA build)

dev.txt is resolved first; the others are resolved under its versions, so the images run exactly
the versions the test suite ran, torch's build aside. The CPU torch comes from a local wheel folder
(`--torch-cpu` PATH, /opt/wheels where it exists) or the PyTorch CPU index.

A lock keeps the versions it has while pyproject.toml still allows them (uv prefers the existing
output): `make lock` after an edit of pyproject.toml changes only what the edit asks for.
`--upgrade-package NAME` moves one package (and what it needs) to its newest allowed version,
`--upgrade` every package.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYPROJECT = HERE.parent / "pyproject.toml"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
LOCAL_WHEELS = Path("/opt/wheels")
TARGET = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def compile_lock(inputs: list[str], output: Path, *options: str) -> None:
    uv = Path(sys.executable).with_name("uv")  # the locked uv of the project's virtualenv
    command = [
        *(str(uv) if uv.exists() else "uv", "pip", "compile", *inputs),
        *("--generate-hashes", "--quiet", "--custom-compile-command", "make lock"),
        *TARGET,
        *options,
        *("--output-file", str(output)),
    ]
    subprocess.run(command, check=True, cwd=HERE.parent)
    # The dev versions are a constraint of every other lock, read from a scratch file: its path is
    # no source of any package, so it stays out of the annotations.
    lines = output.read_text().splitlines(keepends=True)
    output.write_text("".join(line for line in lines if not re.match(r"\s*#\s+-c \S", line)))


def pins(lock: Path, *, without: frozenset[str] = frozenset()) -> str:
    """The lock's versions as constraint lines (name==version), leaving out the named packages."""
    return "".join(f"{name}=={version}\n" for name, version in PIN.findall(lock.read_text()) if name not in without)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--torch-cpu",
        default=str(LOCAL_WHEELS) if LOCAL_WHEELS.is_dir() else TORCH_CPU_INDEX,
        help="a folder holding the CPU torch wheel, or an index URL that serves it (default: %(default)s)",
    )
    parser.add_argument("--upgrade", action="store_true", help="every package to its newest allowed version")
    parser.add_argument("--upgrade-package", action="append", default=[], metavar="NAME", help="this package only")
    args = parser.parse_args()
    upgrade = ["--upgrade"] if args.upgrade else [f"--upgrade-package={name}" for name in args.upgrade_package]
    torch_source = (
        ["--find-links", args.torch_cpu]
        if "://" not in args.torch_cpu
        else ["--extra-index-url", args.torch_cpu, "--index-strategy", "unsafe-best-match"]
    )
    compile_lock(["pyproject.toml", "--extra", "dev"], HERE / "dev.txt", *torch_source, *upgrade)
    if "+cpu" not in dict(PIN.findall((HERE / "dev.txt").read_text())).get("torch", ""):
        sys.exit("dev.txt: torch is not a +cpu build; pass --torch-cpu with a folder or index that has it")

    build = tomllib.loads(PYPROJECT.read_text())["build-system"]["requires"]
    with tempfile.TemporaryDirectory() as scratch:
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text(pins(HERE / "dev.txt", without=frozenset({"torch"})))
        build_in = Path(scratch) / "build-system.in"
        build_in.write_text("".join(f"{requirement}\n" for requirement in build))
        compile_lock([str(build_in), "-c", str(constraints)], HERE / "build.txt", "--no-annotate")
        compile_lock(["pyproject.toml", "--extra", "operator", "-c", str(constraints)], HERE / "operator.txt")
        compile_lock(["pyproject.toml", "--extra", "gateway", "-c", str(constraints)], HERE / "gateway.txt")
        compile_lock(
            ["pyproject.toml", "--extra", "trainer", "--extra", "tracking", "-c", str(constraints)],
            HERE / "trainer.txt",
        )


if __name__ == "__main__":
    main()
