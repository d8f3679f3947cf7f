"""The chart's CRDs are the generated ones: same files as crds/, and what the models generate."""

from __future__ import annotations

import subprocess
import sys

from tensorone.api.crd import CHART_CRD_DIR, CRD_DIR
from tests.chart.conftest import CHART, REPO_ROOT, Rendered


def test_chart_crds_are_the_generated_crds() -> None:
    assert CHART_CRD_DIR == CHART / "crds"
    generated = sorted(path.name for path in CRD_DIR.glob("*.yaml"))
    in_chart = sorted(path.name for path in CHART_CRD_DIR.glob("*.yaml"))
    assert generated == in_chart
    assert generated, "crds/ is empty"
    for name in generated:
        assert (CHART_CRD_DIR / name).read_bytes() == (CRD_DIR / name).read_bytes(), (
            f"charts/tensorone-training-operator/crds/{name} drifted from crds/{name}: run python -m tensorone.api.crd"
        )


def test_committed_crds_match_the_models() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tensorone.api.crd", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_installs_both_crds(rendered: Rendered) -> None:
    names = {crd["metadata"]["name"] for crd in rendered.of_kind("CustomResourceDefinition")}
    assert names == {"trainingjobs.training.tensorone.ai", "datasets.training.tensorone.ai"}
