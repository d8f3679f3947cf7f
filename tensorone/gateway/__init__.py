"""The REST gateway: the reference API's ``/v2/training/jobs`` endpoints over the Kubernetes API.

``python -m tensorone.gateway`` serves :func:`tensorone.gateway.app.create_app` with uvicorn. Every
request acts as its caller: the bearer token is passed to the Kubernetes API server, which
authenticates it and applies RBAC; the gateway holds no credential of its own for jobs.
"""
