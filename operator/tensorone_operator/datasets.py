"""Datasets: found for the jobs that name them, and their status kept in line with their source."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorone.api import API_VERSION, DATASETS
from tensorone.api.timestamps import utc_now
from tensorone_operator.indexes import has_inline_records
from tensorone_operator.kube import KubeApi
from tensorone_operator.status import dataset_status

DatasetIndex = Mapping[tuple[str, str], Mapping[str, Any]]


class Datasets:
    """Reads Datasets (from the index, else the API) and writes their status."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def find(self, index: DatasetIndex, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The whole Dataset; None when absent. From the index, unless the index has not seen it
        yet or keeps it slim (an inline source: the records go into the job's ConfigMap): then read."""
        indexed = index.get((namespace, name))
        if indexed is not None and not has_inline_records(indexed):
            return indexed
        return await self.api.get(API_VERSION, DATASETS, namespace, name)

    async def changed(self, dataset: Mapping[str, Any]) -> Mapping[str, Any]:
        """Keep a Dataset's status (Ready, records) in line with its source; the Dataset with it."""
        meta = dataset["metadata"]
        if meta.get("deletionTimestamp"):
            return dataset
        claim = ((dataset.get("spec") or {}).get("source") or {}).get("pvc", {}).get("claimName")
        exists = None
        if claim:
            exists = await self.api.get("v1", "persistentvolumeclaims", meta["namespace"], claim) is not None
        status = dataset_status(dataset, claim_exists=exists, now=utc_now())
        current = dict(dataset.get("status") or {})
        if status != current:
            patch = {"status": {key: status.get(key) for key in set(status) | set(current)}}
            await self.api.merge_patch(
                API_VERSION, DATASETS, meta["namespace"], meta["name"], patch, subresource="status"
            )
        return {**dataset, "status": status}
