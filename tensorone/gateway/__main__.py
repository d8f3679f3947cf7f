"""``python -m tensorone.gateway``: serve the gateway with uvicorn.

The Kubernetes API's address and CA come from ``--api-server`` (and ``--ca-file``), else from the
pod's in-cluster environment, else from the kubeconfig; only the address and CA are used, never
the credentials found there. The GPU catalog and node check come from the operator's configuration
file (``--operator-config``, the chart mounts the operator's ConfigMap), the built-in ones without.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import yaml

from tensorone.api.catalog import CatalogSettings
from tensorone.errors import ConfigurationError
from tensorone.gateway.app import GatewayConfig

# The operator's configuration file, as the chart mounts it (tensorone_operator.config).
OPERATOR_CONFIG_PATH = "/etc/tensorone/operator/config.yaml"
IN_CLUSTER_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
# A page of a list costs a read of every job of the namespace (the reference's filters and sorts need
# them all); for this long a caller's next pages reuse it. Their own writes through this replica
# forget it at once; other changes show up in lists at most this late (a job's details never wait).
DEFAULT_LIST_CACHE_SECONDS = 2.0


def api_server_address(api_server: str | None, ca_file: str | None) -> tuple[str, str | None]:
    """The API server's URL and CA file: given, in-cluster, or the kubeconfig's current context."""
    if api_server:
        return api_server, ca_file
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port:
        return f"https://{host}:{port}", ca_file or IN_CLUSTER_CA
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    configuration = k8s.Configuration()
    try:
        k8s_config.load_kube_config(client_configuration=configuration)
    except (k8s_config.ConfigException, FileNotFoundError) as error:
        raise ConfigurationError(f"no API server: pass --api-server, or run in a pod ({error})") from None
    return str(configuration.host), ca_file or configuration.ssl_ca_cert


def catalog_settings(path: str) -> CatalogSettings:
    location = Path(path)
    if not location.exists():
        return CatalogSettings()
    return CatalogSettings.from_operator_config(yaml.safe_load(location.read_text()), source=str(location))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tensorone.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--namespace", default="default", help="namespace of requests that name none")
    parser.add_argument("--api-server", help="URL of the Kubernetes API (default: in-cluster or the kubeconfig)")
    parser.add_argument("--ca-file", help="CA bundle of the API server")
    parser.add_argument("--insecure-skip-tls-verify", action="store_true", help="do not verify the API server")
    parser.add_argument("--operator-config", default=OPERATOR_CONFIG_PATH, help="the operator's config file")
    parser.add_argument(
        "--list-cache-seconds",
        type=float,
        default=DEFAULT_LIST_CACHE_SECONDS,
        help="how long a caller's list serves their next pages (default %(default)s; 0 reads on every request)",
    )
    args = parser.parse_args(argv)

    import uvicorn

    from tensorone.gateway.app import create_app

    # The gateway's own log (an unexpected error's traceback); uvicorn configures its loggers itself.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server, ca_file = api_server_address(args.api_server, args.ca_file)
    config = GatewayConfig(
        api_server=server,
        ca_file=ca_file,
        verify_ssl=not args.insecure_skip_tls_verify,
        namespace=args.namespace,
        settings=catalog_settings(args.operator_config),
        list_cache_seconds=args.list_cache_seconds,
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
