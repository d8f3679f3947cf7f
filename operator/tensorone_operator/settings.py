"""kopf settings of the operator and the objects its handlers share (kopf's memo).

Everything kopf stores lives under our own domain: the finalizer
``training.tensorone.ai/finalizer`` and the progress and diff-base annotations prefixed
``training.tensorone.ai``, so nothing is written under kopf.zalando.org.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from tensorone.api import GROUP
from tensorone_operator.cleanup import FINALIZER
from tensorone_operator.config import OperatorConfig, load_config
from tensorone_operator.kube import KubeApi
from tensorone_operator.metrics import serve_metrics
from tensorone_operator.reconcile import Reconciler

METRICS_PORT_KEY = "metrics_port"


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Storage and finalizer under our domain; Events only for warnings and our own Events."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # kopf would post an Event for every INFO log line of a handler: keep Events meaningful.
    settings.posting.level = logging.WARNING
    # A dropped watch is re-established quickly; the API server closes idle ones anyway.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


def post_event(body: Any, event_type: str, reason: str, message: str) -> None:
    """A Kubernetes Event on the TrainingJob (kopf posts it in the background)."""
    kopf.event(body, type=event_type, reason=reason, message=message[:1024])


def build_reconciler(memo: kopf.Memo) -> Reconciler:
    """The Reconciler from the memo's ``config`` (tests put one there) or the config file."""
    config = memo.get("config")
    if not isinstance(config, OperatorConfig):
        config = load_config()
        memo["config"] = config
    api = memo.get("api")
    if not isinstance(api, KubeApi):
        api = KubeApi.from_environment()
    # Namespaced operators do not watch (cluster-scoped) nodes: the GPU check lists them.
    reconciler = Reconciler(config, api, post_event, nodes_indexed=bool(memo.get("clusterwide", True)))
    memo["reconciler"] = reconciler
    port = memo.get(METRICS_PORT_KEY)
    if isinstance(port, int) and port:
        serve_metrics(port)
        memo[METRICS_PORT_KEY] = 0  # once per process: a restarted operator in tests keeps it
    return reconciler
