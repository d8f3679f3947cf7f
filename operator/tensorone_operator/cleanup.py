"""What happens when a TrainingJob is deleted: the operator's children go, then its finalizer.

The claim is deleted only when the operator created it (a claim the user named is theirs). The
annotation ``training.tensorone.ai/force-delete: "true"`` skips the clean-up, so a deletion stuck
on an API error can be released (the garbage collector still removes every child through its
ownerReference).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tensorone.api import API_VERSION, GROUP, TRAININGJOBS
from tensorone.api.events import metric_store_name
from tensorone.api.pods import checkpoint_claim_name
from tensorone.api.v1alpha1 import TrainingJob
from tensorone_operator import builders
from tensorone_operator.children import owned_by
from tensorone_operator.config import OperatorConfig
from tensorone_operator.kube import ApiError, KubeApi

logger = logging.getLogger("tensorone_operator")

FINALIZER = f"{GROUP}/finalizer"
FORCE_DELETE_ANNOTATION = f"{GROUP}/force-delete"


def force_delete_requested(job: TrainingJob) -> bool:
    """Whether the job carries the force-delete annotation."""
    return (job.metadata.annotations or {}).get(FORCE_DELETE_ANNOTATION) == "true"


class Cleanup:
    """Deletes what the operator made for a job being deleted, or releases the job at once."""

    def __init__(self, api: KubeApi, config: OperatorConfig) -> None:
        self.api = api
        self.config = config

    async def finalize(self, job: TrainingJob) -> list[str]:
        """Delete the children owned by a job being deleted; returns what was deleted."""
        namespace, name = str(job.metadata.namespace), str(job.metadata.name)
        if force_delete_requested(job):
            logger.warning("force-delete annotation set: skipping the clean-up of %s/%s", namespace, name)
            return []
        child = builders.child_kind(self.config, namespace)
        targets = [
            (child.api_version, child.plural, name),
            ("v1", "configmaps", builders.config_map_name(name)),
            ("v1", "configmaps", metric_store_name(name)),
        ]
        if builders.owns_checkpoint_claim(job):
            targets.append(("v1", "persistentvolumeclaims", checkpoint_claim_name(str(job.metadata.name), job.spec)))
        deleted = []
        for api_version, plural, child_name in targets:
            existing = await self.api.get(api_version, plural, namespace, child_name)
            if existing is not None and owned_by(existing, job.metadata.uid):
                await self.api.delete(api_version, plural, namespace, child_name)
                deleted.append(f"{plural}/{child_name}")
        return deleted

    async def release(self, job: Mapping[str, Any]) -> bool:
        """Remove our finalizer from a job being deleted that carries the force-delete annotation,
        at once (the clean-up handler may be waiting out a retry); whether it was removed. The
        garbage collector removes the children through their ownerReferences."""
        meta = job["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if not meta.get("deletionTimestamp") or FINALIZER not in finalizers:
            return False
        logger.warning("force-delete annotation set: releasing %s/%s without clean-up", meta["namespace"], meta["name"])
        remaining = [f for f in finalizers if f != FINALIZER]
        try:
            await self.api.merge_patch(
                API_VERSION,
                TRAININGJOBS,
                meta["namespace"],
                meta["name"],
                {"metadata": {"finalizers": remaining or None, "resourceVersion": meta.get("resourceVersion")}},
            )
        except ApiError as exc:
            if exc.status in {404, 409}:  # gone already, or changed: the next event retries
                return False
            raise
        return True
