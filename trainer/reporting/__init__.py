"""Progress reporting: the /progress and /metrics endpoints, the metrics log, the termination message.

``trainer.reporting.client.Reporter`` is the one entry point, used by the TensorOne trainer and by
custom images alike.
"""
