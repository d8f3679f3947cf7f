"""``python -m tensorone_operator``: run the operator (kopf, standalone: no peering).

    python -m tensorone_operator                      # all namespaces (the default)
    python -m tensorone_operator --namespace team-a --namespace team-b

Liveness at http://0.0.0.0:8081/healthz, Prometheus metrics at http://0.0.0.0:8080/metrics.
Configuration: TENSORONE_OPERATOR_CONFIG (default /etc/tensorone/operator/config.yaml; a missing
file means the defaults), TENSORONE_LOG_FORMAT (json | text), TENSORONE_LOG_LEVEL (INFO).
"""

from __future__ import annotations

import argparse
import sys

from tensorone_operator import credentials

if not credentials.needs_kubernetes_client(quiet=True):
    # kopf imports the kubernetes client whenever it is installed (to recognise its model objects,
    # which this operator never hands to kopf), and that import alone costs the process about
    # 47 MB; the operator's own client needs it only for an exec-plugin kubeconfig.
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]

import kopf

from tensorone.errors import ConfigurationError
from tensorone_operator.config import load_config
from tensorone_operator.kube import KubeApi
from tensorone_operator.logs import configure_logging
from tensorone_operator.main import post_event, register
from tensorone_operator.metrics import serve_metrics
from tensorone_operator.reconcile import Reconciler

DEFAULT_LIVENESS = "http://0.0.0.0:8081/healthz"
DEFAULT_METRICS_PORT = 8080


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m tensorone_operator", description=__doc__.split("\n")[0])
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="serve only this namespace (repeatable; globs allowed)"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="serve every namespace (the default)")
    parser.add_argument("--liveness", default=DEFAULT_LIVENESS, help="liveness endpoint URL; '' disables it")
    parser.add_argument(
        "--metrics-port", type=int, default=DEFAULT_METRICS_PORT, help="port of /metrics; 0 disables it"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM; exit 2 on a bad configuration."""
    args = parse_args(argv)
    try:
        configure_logging()
        config = load_config()
        api = KubeApi.from_environment()
    except (ValueError, OSError, ConfigurationError) as exc:
        print(f"tensorone-operator: {exc}", file=sys.stderr)
        return 2
    clusterwide = not args.namespace
    # Namespaced operators do not watch (cluster-scoped) nodes: the GPU check lists them.
    reconciler = Reconciler(config, api, post_event, nodes_indexed=clusterwide)
    serve_metrics(args.metrics_port)
    kopf.run(
        standalone=True,
        clusterwide=clusterwide,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
        # kopf's default registry carries its own login handlers (in-cluster account, kubeconfig).
        registry=register(config, kopf.get_default_registry()),
        memo=kopf.Memo(reconciler=reconciler),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
