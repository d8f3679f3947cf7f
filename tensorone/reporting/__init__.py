"""Progress reporting: the /progress and /metrics endpoints, the metrics log, the termination message.

``tensorone.reporting.client.Reporter`` is the one entry point, used by the TensorOne trainer and by
custom images alike. It needs pydantic and prometheus-client only (the ``report`` extra): neither
torch nor the trainer.
"""
