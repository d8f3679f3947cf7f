"""The GPU catalog: GPU types by key (the value of ``spec.gpuType``), and which nodes offer them.

The operator's configuration (``tensorone_operator.config.OperatorConfig.gpu_catalog``) holds the
catalog in force; the built-in one is ``DEFAULT_GPU_CATALOG``. The SDK and the gateway check a job
against the same catalog before creating it, so the types live here, where all of them can import
them. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from tensorone.api.v1alpha1 import TrainingJobSpec
from tensorone.api.v1alpha1.trainingjob import EstimatedCost, ResourceAllocation
from tensorone.errors import ConfigurationError

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
# The operator's defaults for a CPU-only job's pod memory and the catalog's currency (OperatorConfig).
DEFAULT_CPU_JOB_MEMORY = "8Gi"
DEFAULT_CURRENCY = "USD"

# A Kubernetes quantity as the API server accepts it for requests and limits (decimal or binary
# suffixes, optional fraction, optional exponent-free milli for CPU).
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
# Label values (nvidia.com/gpu.product) are at most 63 characters of [A-Za-z0-9-_.].
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
# Label and taint keys: a qualified name (at most 63 characters) with an optional DNS-subdomain prefix.
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"


class ConfigModel(BaseModel):
    """Base of the operator's configuration models, the catalog's included: camelCase in the file,
    unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Toleration(ConfigModel):
    """A toleration the pods of a spot job get: the taint its spot nodes carry (Kubernetes'
    Toleration, without tolerationSeconds)."""

    key: str = Field(
        max_length=316, pattern=LABEL_KEY_PATTERN, description="Taint key, for example cloud.google.com/gke-spot."
    )
    operator: Literal["Equal", "Exists"] = Field(
        default="Equal", description="Equal: the taint's value must be value; Exists: any value (value left out)."
    )
    value: str | None = Field(
        default=None, pattern=LABEL_VALUE_PATTERN, description="Taint value with operator Equal, for example true."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect tolerated; absent tolerates every effect of the key."
    )

    @model_validator(mode="after")
    def _value_with_equal(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("a toleration with operator Exists takes no value")
        if self.operator == "Equal" and self.value is None:
            raise ValueError("a toleration with operator Equal needs a value (or use operator Exists)")
        return self

    def to_wire(self) -> dict[str, str]:
        """The toleration as a pod spec holds it."""
        return self.model_dump(by_alias=True, exclude_none=True)


class SpotCapacity(ConfigModel):
    """Spot (preemptible) nodes of a GPU type: how a job with spec.spot finds them, and their price.

    Clouds mark their spot nodes with a label, often a taint too: GKE ``cloud.google.com/gke-spot:
    "true"`` (taint of the same key on node pools that ask for it), EKS managed node groups
    ``eks.amazonaws.com/capacityType: SPOT``, Karpenter ``karpenter.sh/capacity-type: spot``, AKS
    ``kubernetes.azure.com/scalesetpriority: spot`` with the taint
    ``kubernetes.azure.com/scalesetpriority=spot:NoSchedule``."""

    node_selector: dict[str, str] = Field(
        min_length=1,
        max_length=16,
        description="Node labels that mark the spot nodes of this GPU type; a spot job's pods select them (beside "
        "the GPU product).",
        json_schema_extra={
            "propertyNames": {"maxLength": 316, "pattern": LABEL_KEY_PATTERN},
            "additionalProperties": {"type": "string", "pattern": LABEL_VALUE_PATTERN},
        },
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=16,
        description="Tolerations a spot job's pods get: the taints the spot nodes carry.",
    )
    hourly_price: float = Field(
        ge=0.0,
        description="Price of one spot GPU for one hour, in the config's currency: what a spot job's cost counts.",
    )

    @field_validator("node_selector")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if len(key) > 316 or not re.match(LABEL_KEY_PATTERN, key):
                raise ValueError(
                    f"{key!r} is not a valid label key: [DNS-subdomain prefix/]name of at most 63 characters"
                )
            if not re.match(LABEL_VALUE_PATTERN, value):
                raise ValueError(
                    f"{value!r} (label {key}) is not a valid label value: at most 63 characters of letters, digits, "
                    "'-', '_' and '.', starting and ending with a letter or digit"
                )
        return labels


class GpuType(ConfigModel):
    """One entry of the GPU catalog: how to find the GPU on nodes, and what it gives and costs."""

    display_name: str = Field(
        min_length=1, max_length=128, description="Shown as resourceAllocation.gpuType, for example NVIDIA A100."
    )
    products: list[str] = Field(
        min_length=1,
        description="Values of the node label nvidia.com/gpu.product (set by NVIDIA GPU Feature Discovery) "
        "that count as this GPU type.",
        # What the validator below checks, for JSON-schema readers of this model (the chart's values schema).
        json_schema_extra={"items": {"type": "string", "pattern": LABEL_VALUE_PATTERN}},
    )
    memory_per_gpu: str = Field(
        pattern=r"^[0-9]+(\.[0-9]+)?(GB|TB|MB)$",
        description="GPU memory of one GPU, for example 80GB; resourceAllocation.memoryPerWorker is this times "
        "gpusPerWorker.",
    )
    hourly_price: float = Field(ge=0.0, description="Price of one GPU for one hour, in the config's currency.")
    cpu_per_gpu: str = Field(
        default="8",
        pattern=QUANTITY_PATTERN,
        description='CPU requested per GPU, a Kubernetes quantity written as a string ("12", not 12).',
    )
    host_memory_per_gpu: str = Field(
        default="64Gi", pattern=QUANTITY_PATTERN, description="Host memory requested per GPU, for example 120Gi."
    )
    spot: SpotCapacity | None = Field(
        default=None,
        description="Spot capacity of this GPU type: the node labels and tolerations that place a job with "
        "spec.spot on spot nodes, and the spot price. Absent: jobs of this type cannot ask for spot.",
    )

    @field_validator("products")
    @classmethod
    def _label_values(cls, products: list[str]) -> list[str]:
        for value in products:
            if not re.match(LABEL_VALUE_PATTERN, value):
                raise ValueError(
                    f"{value!r} is not a valid label value: at most 63 characters of letters, digits, '-', '_' "
                    "and '.', starting and ending with a letter or digit"
                )
        return products


def _gpu(  # noqa: PLR0917 - a table of entries reads best positionally
    display_name: str,
    products: list[str],
    memory_per_gpu: str,
    hourly_price: float,
    cpu_per_gpu: str,
    host_memory_per_gpu: str,
) -> GpuType:
    return GpuType(
        display_name=display_name,
        products=products,
        memory_per_gpu=memory_per_gpu,
        hourly_price=hourly_price,
        cpu_per_gpu=cpu_per_gpu,
        host_memory_per_gpu=host_memory_per_gpu,
    )


# Product values are what GPU Feature Discovery derives from the driver's product name (spaces
# become '-'). Prices are indicative on-demand cloud prices per GPU-hour; operators of a real
# cluster set their own in the chart values.
DEFAULT_GPU_CATALOG: dict[str, GpuType] = {
    "a100": _gpu(
        "NVIDIA A100",
        ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe", "NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"],
        "80GB",
        4.10,
        "12",
        "120Gi",
    ),
    "h100": _gpu(
        "NVIDIA H100",
        ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe", "NVIDIA-H100-NVL"],
        "80GB",
        6.98,
        "16",
        "200Gi",
    ),
    "h200": _gpu("NVIDIA H200", ["NVIDIA-H200", "NVIDIA-H200-NVL"], "141GB", 8.50, "16", "240Gi"),
    "v100": _gpu(
        "NVIDIA V100",
        ["Tesla-V100-SXM2-16GB", "Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-16GB", "Tesla-V100-PCIE-32GB"],
        "32GB",
        2.48,
        "8",
        "60Gi",
    ),
    "l4": _gpu("NVIDIA L4", ["NVIDIA-L4"], "24GB", 0.80, "8", "32Gi"),
    "a10g": _gpu("NVIDIA A10G", ["NVIDIA-A10G"], "24GB", 1.21, "8", "32Gi"),
    "l40s": _gpu("NVIDIA L40S", ["NVIDIA-L40S"], "48GB", 1.86, "12", "64Gi"),
    "rtx4090": _gpu("NVIDIA GeForce RTX 4090", ["NVIDIA-GeForce-RTX-4090"], "24GB", 0.69, "8", "32Gi"),
    "a6000": _gpu("NVIDIA RTX A6000", ["NVIDIA-RTX-A6000"], "48GB", 0.79, "8", "48Gi"),
    "t4": _gpu("NVIDIA T4", ["Tesla-T4"], "16GB", 0.35, "4", "16Gi"),
}


def catalog_entry(gpu_type: str, catalog: Mapping[str, GpuType]) -> GpuType:
    """The catalog entry of ``spec.gpuType``.

    Raises ConfigurationError naming the field and the catalog keys when the type is unknown.
    """
    entry = catalog.get(gpu_type)
    if entry is None:
        allowed = sorted(catalog)
        raise ConfigurationError(
            f"unknown GPU type {gpu_type!r}; the catalog offers: {', '.join(allowed)}",
            field="spec.gpuType",
            details={"requestedGpuType": gpu_type, "availableGpuTypes": allowed},
        )
    return entry


def spot_gpu_types(catalog: Mapping[str, GpuType]) -> list[str]:
    """Sorted catalog keys whose entry has spot capacity."""
    return sorted(key for key, entry in catalog.items() if entry.spot is not None)


def spot_error(spec: TrainingJobSpec, catalog: Mapping[str, GpuType]) -> ConfigurationError | None:
    """``spec.spot`` must name a GPU type whose catalog entry has spot capacity (a job without
    gpuType has none: spot capacity is a setting of the GPU catalog). The error names the GPU types
    that offer spot. An unknown gpuType is :func:`catalog_entry`'s error, not this one."""
    entry = catalog.get(spec.gpu_type) if spec.gpu_type else None
    if not spec.spot or (entry is not None and entry.spot is not None) or (spec.gpu_type and entry is None):
        return None
    offered = spot_gpu_types(catalog)
    which = f"GPU type {spec.gpu_type!r} has no spot capacity" if spec.gpu_type else "a job without gpuType runs on CPU"
    return ConfigurationError(
        f"{which}; spot is offered for GPU types: {', '.join(offered) if offered else 'none'} "
        "(gpuCatalog.<type>.spot in the operator's configuration)",
        field="spec.spot",
        details={"requestedGpuType": spec.gpu_type, "spotGpuTypes": offered},
    )


def node_gpu_types(node: Mapping[str, Any], catalog: Mapping[str, GpuType], *, spot: bool = False) -> set[str]:
    """Catalog keys a node offers: its product label is listed in the entry and it has GPUs; with
    ``spot``, only the entries whose spot node labels the node carries.

    A node counts when its ``nvidia.com/gpu`` allocatable is above zero (or not reported yet, as
    on a node whose device plugin has not registered) and it is not cordoned.
    """
    labels = (node.get("metadata") or {}).get("labels") or {}
    product = labels.get(GPU_PRODUCT_LABEL)
    if not product or (node.get("spec") or {}).get("unschedulable"):
        return set()
    allocatable = ((node.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE)
    if allocatable is not None and str(allocatable) in {"0", ""}:
        return set()
    return {
        key for key, entry in catalog.items() if product in entry.products and (not spot or _spot_node(labels, entry))
    }


def _spot_node(labels: Mapping[str, str], entry: GpuType) -> bool:
    """Whether a node's labels are those of the entry's spot nodes."""
    return entry.spot is not None and all(labels.get(k) == v for k, v in entry.spot.node_selector.items())


def available_gpu_types(
    nodes: Iterable[Mapping[str, Any]], catalog: Mapping[str, GpuType], *, spot: bool = False
) -> list[str]:
    """Sorted catalog keys that at least one node offers (on spot nodes, with ``spot``)."""
    offered: set[str] = set()
    for node in nodes:
        offered |= node_gpu_types(node, catalog, spot=spot)
    return sorted(offered)


@dataclass(frozen=True)
class JobResources:
    """What a job is given, from its spec and the catalog: the entry of its GPU type (None for a
    CPU-only job), GPUs per worker (0 on CPU) and workers."""

    gpu_type: str | None
    entry: GpuType | None
    gpus_per_worker: int
    workers: int
    # The price of one CPU-only pod for an hour (the operator's cpuJob.hourlyPrice; 0 by default).
    cpu_pod_hourly_price: float = 0.0
    # The spot capacity the pods run on (spec.spot), None on on-demand nodes.
    spot: SpotCapacity | None = None

    @property
    def gpus(self) -> int:
        """GPUs of the whole job."""
        return self.gpus_per_worker * self.workers

    @property
    def processes_per_worker(self) -> int:
        """Training processes per pod: one per GPU, one on CPU."""
        return max(self.gpus_per_worker, 1)

    @property
    def hourly_price_per_gpu(self) -> float:
        """The catalog price of one GPU for one hour (0 on CPU): the spot price on spot capacity."""
        if self.entry is None:
            return 0.0
        return self.spot.hourly_price if self.spot is not None else self.entry.hourly_price

    def hourly_cost(self) -> float:
        """Price of one hour of the whole job: catalog price per GPU x GPUs per worker x workers;
        for a CPU-only job, the CPU pod price x workers."""
        if self.entry is None:
            return round(self.cpu_pod_hourly_price * self.workers, 4)
        return round(self.hourly_price_per_gpu * self.gpus_per_worker * self.workers, 4)


def job_resources(
    spec: TrainingJobSpec, catalog: Mapping[str, GpuType], *, cpu_pod_hourly_price: float = 0.0
) -> JobResources:
    """The job's resources: ``spec.gpuType`` looked up in the catalog, ``gpusPerWorker`` 1 by
    default when a GPU type is set, 0 for CPU jobs (priced at ``cpu_pod_hourly_price`` a pod), and
    the entry's spot capacity when ``spec.spot`` asks for it.

    Raises ConfigurationError naming the field and the catalog keys when the type is unknown, and
    naming the types that offer spot when the job asks for spot its type does not offer.
    """
    key = spec.gpu_type
    no_spot = spot_error(spec, catalog)
    if no_spot is not None:
        raise no_spot
    if not key:
        return JobResources(
            gpu_type=None,
            entry=None,
            gpus_per_worker=0,
            workers=spec.max_workers,
            cpu_pod_hourly_price=cpu_pod_hourly_price,
        )
    entry = catalog_entry(key, catalog)
    return JobResources(
        gpu_type=key,
        entry=entry,
        gpus_per_worker=spec.gpus_per_worker or 1,
        workers=spec.max_workers,
        spot=entry.spot if spec.spot else None,
    )


_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(MB|GB|TB)$")


def scale_memory(per_gpu: str, count: int) -> str:
    """``80GB`` x 2 -> ``160GB`` (the unit of the catalog entry is kept)."""
    match = _MEMORY.match(per_gpu)
    if not match:
        return per_gpu
    total = float(match.group(1)) * count
    return f"{total:g}{match.group(2)}"


def resource_allocation(resources: JobResources, *, cpu_memory: str) -> dict[str, Any]:
    """``status.resourceAllocation`` (wire form): display name, workers, GPUs in total, GPU memory per
    worker, and whether the pods run on spot capacity; ``cpu_memory`` is the memory of a CPU-only job's pods (the operator's ``cpuJob.memory``)."""
    if resources.entry is None:
        allocation = ResourceAllocation(gpu_type="CPU", workers=resources.workers, gpus=0, memory_per_worker=cpu_memory)
    else:
        allocation = ResourceAllocation(
            gpu_type=resources.entry.display_name,
            workers=resources.workers,
            gpus=resources.gpus,
            memory_per_worker=scale_memory(resources.entry.memory_per_gpu, resources.gpus_per_worker),
            spot=True if resources.spot is not None else None,
        )
    return allocation.to_wire()


def estimated_cost(
    resources: JobResources,
    *,
    currency: str,
    max_runtime_seconds: int | None,
    spent: float = 0.0,
    remaining_seconds: float | None = None,
) -> dict[str, Any]:
    """``status.estimatedCost``: hourly price and the estimated total.

    The total is what has been spent so far plus the hourly price times the time still expected:
    the trainer's remaining-time estimate once it reports one (the live status passes it in from
    the progress report), otherwise the job's time limit ``maxRuntimeSeconds`` as an upper bound.
    With neither, the total is unknown and left out rather than guessed.
    """
    hourly = resources.hourly_cost()
    if remaining_seconds is None and max_runtime_seconds:
        remaining_seconds = float(max_runtime_seconds)
    total = None if remaining_seconds is None else round(spent + hourly * remaining_seconds / 3600.0, 2)
    return EstimatedCost(hourly=hourly, total=total, currency=currency).to_wire()


@dataclass(frozen=True)
class CatalogSettings:
    """What the create-time checks and a created job's estimate need of the operator's
    configuration: its GPU catalog, whether it checks that a node offers the GPU type, a CPU-only
    job's pod memory and the currency (``gpuCatalog``, ``checkGpuNodes``, ``cpuJob.memory``,
    ``currency``)."""

    gpu_catalog: Mapping[str, GpuType] = field(default_factory=lambda: dict(DEFAULT_GPU_CATALOG))
    check_gpu_nodes: bool = True
    cpu_memory: str = DEFAULT_CPU_JOB_MEMORY
    currency: str = DEFAULT_CURRENCY
    cpu_pod_hourly_price: float = 0.0

    @classmethod
    def from_operator_config(
        cls, data: Mapping[str, Any] | None, *, source: str = "operator config"
    ) -> CatalogSettings:
        """The settings from the operator's configuration file as parsed YAML (the chart's
        ConfigMap); the operator's defaults for what it leaves out."""
        data = data or {}
        cpu_job = data.get("cpuJob") or {}
        cpu_memory = str(cpu_job.get("memory") or DEFAULT_CPU_JOB_MEMORY)
        cpu_price = cpu_job.get("hourlyPrice", 0.0)
        if isinstance(cpu_price, bool) or not isinstance(cpu_price, int | float) or not 0 <= cpu_price <= 1e6:
            raise ConfigurationError(
                f"{source}: must be a number from 0 to 1000000, got {cpu_price!r}", field="cpuJob.hourlyPrice"
            )
        currency = str(data.get("currency") or DEFAULT_CURRENCY)
        check = data.get("checkGpuNodes", True)
        if not isinstance(check, bool):
            raise ConfigurationError(f"{source}: must be true or false, got {check!r}", field="checkGpuNodes")
        raw = data.get("gpuCatalog")
        if raw is None:
            return cls(check_gpu_nodes=check, cpu_memory=cpu_memory, currency=currency, cpu_pod_hourly_price=cpu_price)
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigurationError(f"{source}: must be a mapping of GPU types", field="gpuCatalog")
        try:
            catalog = {str(key): GpuType.model_validate(value) for key, value in raw.items()}
        except ValidationError as error:
            raise ConfigurationError(f"{source}: {error.errors()[0]['msg']}", field="gpuCatalog") from None
        return cls(
            gpu_catalog=catalog,
            check_gpu_nodes=check,
            cpu_memory=cpu_memory,
            currency=currency,
            cpu_pod_hourly_price=cpu_price,
        )
