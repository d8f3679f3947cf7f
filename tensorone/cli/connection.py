"""How the ``t1`` verbs that talk to a cluster reach it: the options they share (``-n``,
``--context``, ``--kubeconfig``) and the SDK client those options make.

The client talks to the Kubernetes API with the kubeconfig, or to the gateway when
``$TENSORONE_BASE_URL`` is set (see :class:`tensorone.client.TensorOneClient`). A verb that needs
what only the Kubernetes API offers (a watch, Datasets, every namespace) asks for
:func:`kube_client`, which says so when the gateway is configured.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from tensorone.errors import ConfigurationError

if TYPE_CHECKING:
    from tensorone.client import Jobs, TensorOneClient

# The environment variable that sends the SDK to the gateway (tensorone.client.BASE_URL_ENV, named
# here too so that building the parser does not import the SDK).
BASE_URL_ENV = "TENSORONE_BASE_URL"


def add_verb(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, handler: Any
) -> argparse.ArgumentParser:
    """A verb that talks to a cluster: its parser, with the connection options, calling ``handler``."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    add_connection_arguments(parser)
    parser.set_defaults(handler=handler)
    return parser


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's, or default)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--kubeconfig", help="kubeconfig file")


def client(args: argparse.Namespace) -> Any:
    """The SDK client of the options (typed Any: its jobs are one of two transports)."""
    from tensorone.client import TensorOneClient

    return TensorOneClient(namespace=args.namespace, context=args.context, kubeconfig=args.kubeconfig)


def kube_client(args: argparse.Namespace, what: str) -> TensorOneClient:
    """The client over the Kubernetes API; CONFIGURATION_ERROR naming ``$TENSORONE_BASE_URL`` when
    the gateway is configured, since ``what`` (a verb or an option) needs the Kubernetes API."""
    if os.environ.get(BASE_URL_ENV):
        raise ConfigurationError(
            f"{what} needs the Kubernetes API (the kubeconfig), and this shell sends t1 to the gateway",
            field=BASE_URL_ENV,
        )
    found: TensorOneClient = client(args)
    return found


def kube_jobs(args: argparse.Namespace, what: str) -> Jobs:
    """``client.training.jobs`` over the Kubernetes API (see :func:`kube_client`)."""
    from tensorone.client import Jobs

    jobs = kube_client(args, what).training.jobs
    assert isinstance(jobs, Jobs)  # kube_client refused the gateway
    return jobs
