"""Where this process sits among the training processes, and the few collective calls the loop needs.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for every process it
starts. Kubeflow's PyTorchJob sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK in each pod, and
PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT (the torchrun arguments) when the pod
command is torchrun. A process started without torchrun in a one-process-per-pod job falls back to
the PET_* values. With none of them set, the run is a single process and no process group is made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from tensorone.errors import ConfigurationError

T = TypeVar("T")

# Long enough for rank 0 to write a large checkpoint while the others wait at the barrier.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Topology:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0 serves the reports and writes what only one process may write."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def topology_from_env(env: Mapping[str, str] | None = None) -> Topology:
    """Read the process's rank and the rendezvous address from the torchrun / Kubeflow variables."""
    env = os.environ if env is None else env
    per_node = _int(env, "PET_NPROC_PER_NODE", 1) if env.get("PET_NPROC_PER_NODE", "auto") != "auto" else 1
    # Without torchrun, PET_* describe nodes; they are process ranks only with one process per node.
    pet_usable = per_node == 1
    world_size = _int(env, "WORLD_SIZE", _int(env, "PET_NNODES", 1) if pet_usable else 1)
    rank = _int(env, "RANK", _int(env, "PET_NODE_RANK", 0) if pet_usable else 0)
    local_rank = _int(env, "LOCAL_RANK", 0)
    if world_size < 1:
        raise ConfigurationError(f"must be at least 1, got {world_size}", field="WORLD_SIZE")
    if not 0 <= rank < world_size:
        raise ConfigurationError(f"{rank} is outside 0..{world_size - 1} (WORLD_SIZE {world_size})", field="RANK")
    if world_size == 1:
        return Topology(local_rank=local_rank)
    master_addr = env.get("MASTER_ADDR") or env.get("PET_MASTER_ADDR")
    master_port = env.get("MASTER_PORT") or env.get("PET_MASTER_PORT")
    if not master_addr or not master_port:
        raise ConfigurationError(
            f"WORLD_SIZE is {world_size} but the rendezvous address is missing: set MASTER_ADDR and MASTER_PORT "
            "(torchrun and Kubeflow's PyTorchJob set them)",
            field="MASTER_ADDR",
        )
    return Topology(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        master_addr=master_addr,
        master_port=_int({"MASTER_PORT": master_port}, "MASTER_PORT", 0),
    )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"must be an integer, got {value!r}", field=name) from None


def device_for(topology: Topology, use_gpu: bool) -> torch.device:
    """cuda:LOCAL_RANK when the job has GPUs, else the CPU."""
    if use_gpu:
        torch.cuda.set_device(topology.local_rank)
        return torch.device("cuda", topology.local_rank)
    return torch.device("cpu")


def start(topology: Topology, device: torch.device) -> None:
    """Join the process group (nccl on GPUs, gloo on CPUs); a single process joins nothing."""
    if not topology.is_distributed or dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", str(topology.master_addr))
    os.environ.setdefault("MASTER_PORT", str(topology.master_port))
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        init_method="env://",
        rank=topology.rank,
        world_size=topology.world_size,
        timeout=COLLECTIVE_TIMEOUT,
        device_id=device if device.type == "cuda" else None,
    )


def stop() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, topology: Topology) -> torch.Tensor:
    """Sum a small tensor over every process (in place); a single process returns it unchanged."""
    if topology.is_distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast(value: T, topology: Topology) -> T:
    """Rank 0's value, on every process (a small picklable object)."""
    if not topology.is_distributed:
        return value
    holder: list[object] = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]  # type: ignore[return-value]


def gather_to_main(value: T, topology: Topology) -> list[T] | None:
    """Every process's value (a picklable object), in rank order, on rank 0; None on the others."""
    if not topology.is_distributed:
        return [value]
    gathered: list[object] | None = [None] * topology.world_size if topology.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered  # type: ignore[return-value]


def barrier(topology: Topology) -> None:
    """Wait for every process."""
    if topology.is_distributed:
        dist.barrier()
