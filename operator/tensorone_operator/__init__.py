"""The TensorOne training operator (kopf): TrainingJob -> Kubeflow PyTorchJob, status mirrored back.

The folder operator/ is not a package, so the standard library's ``operator`` module is never
shadowed; this package is installed from it by pyproject.toml.
"""
