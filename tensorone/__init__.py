"""TensorOne training: API types, CRD generation, the Python SDK and the ``t1`` command line."""

from typing import TYPE_CHECKING

from tensorone.errors import TensorOneError

if TYPE_CHECKING:
    # What __getattr__ returns, for type checkers (``from tensorone import TensorOneClient``).
    from tensorone.client import TensorOneClient

__all__ = ["TensorOneClient", "TensorOneError"]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The client needs the kubernetes package; import it only when asked for, so the trainer
    # image (which has no kubernetes client) can still import the API types.
    if name == "TensorOneClient":
        from tensorone.client import TensorOneClient

        return TensorOneClient
    raise AttributeError(name)
