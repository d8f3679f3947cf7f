"""The committed locks (requirements/*.txt) are exactly what pyproject.toml asks for, and what the
Makefile installs: a dependency changes only by a commit that regenerates them (`make lock`)."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "requirements"
PROJECT = "tensorone-training"
# The lock of each install and the extras it holds: development and CI, and the images.
EXTRAS_OF_LOCK: dict[str, tuple[str, ...]] = {
    "dev.txt": ("dev",),
    "operator.txt": ("operator",),
    "gateway.txt": ("gateway",),
    "trainer.txt": ("trainer", "tracking"),
}
# Where the locks are resolved for (requirements/lock.py): CPython 3.11 on Linux x86_64.
ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
ROOT = f"{PROJECT} (pyproject.toml)"


@dataclass
class Pin:
    version: Version
    hashes: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


def read_lock(text: str) -> dict[str, Pin]:
    """A uv/pip-tools lock: `name==version \\` lines, their `--hash=` lines and `# via` annotations."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for line in text.splitlines():
        stripped = line.strip()
        if line and not line[0].isspace() and not line.startswith("#"):
            match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(;[^\\]*)?\\?$", line)
            assert match, f"not an exact pin: {line!r}"
            current = pins.setdefault(canonicalize_name(match[1]), Pin(Version(match[2])))
            in_via = False
        elif current is not None and stripped.startswith("--hash="):
            current.hashes.append(stripped.removeprefix("--hash=").rstrip(" \\"))
        elif current is not None and stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current.via.add(rest)
        elif current is not None and in_via and stripped.startswith("#   "):
            current.via.add(stripped.removeprefix("#").strip())
    return pins


def requirements_of(pyproject: dict[str, Any], *extras: str) -> list[Requirement]:
    """The project's dependencies plus the extras', with the extras they name of the project itself."""
    project = pyproject["project"]
    wanted, seen = list(extras), set()
    found = [Requirement(text) for text in project["dependencies"]]
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in project["optional-dependencies"][name]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == PROJECT:
                wanted.extend(requirement.extras)
            else:
                found.append(requirement)
    return [r for r in found if r.marker is None or r.marker.evaluate(ENVIRONMENT)]


def disagreements(requirements: list[Requirement], pins: dict[str, Pin]) -> list[str]:
    """What keeps a lock from being the resolution of these requirements, in words."""
    problems = []
    direct = {canonicalize_name(r.name) for r in requirements}
    for requirement in requirements:
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} is not locked")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} does not allow the locked {requirement.name}=={pin.version}")
    for name, pin in pins.items():
        if not pin.hashes:
            problems.append(f"{name} has no hash")
        if ROOT in pin.via and name not in direct:
            problems.append(f"{name} is locked for the project, which no longer asks for it")
        if not pin.via & ({ROOT} | set(pins)):
            problems.append(f"{name} is locked though no locked package needs it (via {sorted(pin.via)})")
    return problems


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def locks() -> dict[str, dict[str, Pin]]:
    return {path.name: read_lock(path.read_text()) for path in LOCKS.glob("*.txt")}


def test_every_install_has_a_lock(locks: dict[str, dict[str, Pin]]) -> None:
    assert set(locks) == {*EXTRAS_OF_LOCK, "build.txt"}


@pytest.mark.parametrize("lock", sorted(EXTRAS_OF_LOCK))
def test_the_lock_is_the_resolution_of_its_extra(
    lock: str, pyproject: dict[str, Any], locks: dict[str, dict[str, Pin]]
) -> None:
    assert disagreements(requirements_of(pyproject, *EXTRAS_OF_LOCK[lock]), locks[lock]) == [], (
        f"requirements/{lock} and pyproject.toml disagree: run `make lock` and commit the result"
    )


def test_the_build_lock_holds_the_build_system(pyproject: dict[str, Any], locks: dict[str, dict[str, Pin]]) -> None:
    for text in pyproject["build-system"]["requires"]:
        requirement = Requirement(text)
        pin = locks["build.txt"].get(canonicalize_name(requirement.name))
        assert pin is not None and requirement.specifier.contains(pin.version), f"{text}: run `make lock`"
        assert pin.hashes


def test_images_run_the_versions_the_suite_ran(locks: dict[str, dict[str, Pin]]) -> None:
    """Every package of an image lock (and the build lock) has the dev lock's version; torch differs
    only by its build (+cpu on development machines, PyPI's CUDA build in the trainer image)."""
    dev = locks["dev.txt"]
    for lock in ("operator.txt", "gateway.txt", "trainer.txt", "build.txt"):
        for name, pin in locks[lock].items():
            if name in dev:
                assert pin.version.public == dev[name].version.public, f"{lock}: {name} {pin.version}"
    assert dev["torch"].version.local == "cpu"
    assert locks["trainer.txt"]["torch"].version.local is None
    assert any(name.startswith("nvidia-") for name in locks["trainer.txt"]), "the CUDA libraries are locked"
    assert "torch" not in locks["operator.txt"]
    assert "torch" not in locks["gateway.txt"]


def test_the_checker_sees_a_lock_that_pyproject_outgrew(pyproject: dict[str, Any]) -> None:
    pins = read_lock((LOCKS / "operator.txt").read_text())
    requirements = requirements_of(pyproject, "operator")
    assert disagreements(requirements, pins) == []
    changed = [*requirements, Requirement("kopf>=1.46"), Requirement("rich>=13")]
    dropped = [r for r in requirements if r.name != "kopf"]
    assert disagreements(changed, pins) == [
        "kopf>=1.46 does not allow the locked kopf==1.45.2",
        "rich>=13 is not locked",
    ]
    assert "kopf is locked for the project, which no longer asks for it" in disagreements(dropped, pins)


def test_make_installs_exactly_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("$(BIN)/.installed:", 1)[1].split("\n\n", 1)[0]
    installs = [shlex.split(line) for line in recipe.splitlines() if "pip install" in line]
    assert installs, "the Makefile installs nothing"
    for words in installs:
        # Nothing is resolved at install time: hashed locks, then the project alone.
        assert "--no-deps" in words, words
        assert ("--require-hashes" in words) != ("-e" in words), words
    locked = {words[i + 1] for words in installs for i, word in enumerate(words) if word == "-r"}
    assert locked == {"requirements/build.txt", "requirements/dev.txt"}
