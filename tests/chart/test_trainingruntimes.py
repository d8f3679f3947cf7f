"""The ClusterTrainingRuntimes the chart ships for the TrainJob backend are the ones the operator's
TrainJobs name, as ``builders.build_runtimes`` makes them from the rendered operator config; none
without that backend."""

from __future__ import annotations

from collections.abc import Callable

import yaml
from tensorone_operator.builders import build_runtimes
from tensorone_operator.config import parse_config

from tensorone.api.admission import validate
from tests.chart.conftest import Rendered
from tests.kube import kubeflow_trainer

Render = Callable[..., Rendered]


def test_trainjob_backend_ships_the_runtimes_the_operator_names(render: Render) -> None:
    rendered = render({"operatorConfig": {"namespaceBackends": {"ml-team-a": "trainjob"}}})
    config_map = rendered.one("ConfigMap", "-config")
    config = parse_config(yaml.safe_load(config_map["data"]["config.yaml"]))
    runtimes = {obj["metadata"]["name"]: obj for obj in rendered.of_kind("ClusterTrainingRuntime")}
    wanted = {obj["metadata"]["name"]: obj for obj in build_runtimes(config)}
    assert runtimes == wanted
    for runtime in runtimes.values():  # Kubeflow Trainer v2.2's schema accepts them as they are
        validate(runtime, None, crds=kubeflow_trainer.crds())


def test_no_runtimes_without_the_trainjob_backend(render: Render) -> None:
    assert render({}).of_kind("ClusterTrainingRuntime") == []
