"""API types of the ``training.tensorone.ai`` group: the one source of truth for the CRDs."""

GROUP = "training.tensorone.ai"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
