"""Run Python code in a fresh interpreter where some packages cannot be imported, as on a machine
where they are not installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

# Put first on sys.meta_path, before any import of the code: an import of a blocked package, or of
# a module inside one, fails as it does when the package is not installed.
BLOCKER = """\
import importlib.abc
import sys


class Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Uninstalled())
"""


def run_without(blocked: Iterable[str], code: str, *, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in ``cwd`` with the top-level packages ``blocked`` unimportable; its output and
    exit code."""
    program = f"BLOCKED = {sorted(blocked)!r}\n{BLOCKER}\n{textwrap.dedent(code)}"
    command = [sys.executable, "-c", program]
    # The exit code is part of what the caller checks: a failure is a result, not an exception.
    return subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True, timeout=120)
