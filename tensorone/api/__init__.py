"""API types of the ``training.tensorone.ai`` group: the one source of truth for the CRDs."""

GROUP = "training.tensorone.ai"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# The resources' plural names (the URL path segment of each kind).
TRAININGJOBS = "trainingjobs"
DATASETS = "datasets"
