"""A folder of a job's checkpoint claim copied onto this machine through a short-lived pod: how
``t1 download`` gets the files of a job that was not exported.

The pod is made with the caller's own credentials in the job's namespace, mounts the claim
read-only at the path the training pods mount it (so status.output.path and the checkpoint ids
name folders under it), and only sleeps; the files come out as ``kubectl cp`` takes them, as a tar
stream of ``tar -c -f - -C <folder> .`` run in it over ``pods/exec`` (WebSocket,
``v5.channel.k8s.io`` or ``v4.channel.k8s.io``). Each file of the stream is written under the
staging folder as it arrives, with its size and SHA-256: the caller checks them against the
checkpoint's manifest or the output's digest before anything reaches the target.

The pod is restricted (the Pod Security "restricted" profile: non-root as the training pods' user,
read-only root filesystem, no privilege escalation, every capability dropped, the runtime's
default seccomp profile), has no service account token, small resource limits, an
``activeDeadlineSeconds`` that ends it even if nothing deletes it, and an ownerReference to the
TrainingJob (deleted with it); it is deleted as soon as the copy ends, failed, or was interrupted.

A ReadWriteOnce claim in use by a running pod can be mounted only on that pod's node: the pod is
pinned there (with that pod's tolerations, for a tainted GPU node); a ReadWriteOncePod claim in
use cannot be mounted at all, and is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import secrets
import tarfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tensorone.api import API_VERSION, GROUP
from tensorone.api.pods import DEFAULT_TRAINER_IMAGE, LABEL_JOB_NAME, TRAINER_CONTAINERS, TRAINING_USER
from tensorone.api.resolved import DEFAULT_CHECKPOINT_DIR
from tensorone.errors import Forbidden, InvalidJobState, TensorOneError, TransferError

CONTAINER = "download"
# The label of a download pod: the job whose files it copies (not the job-name label of the
# training pods, which the operator watches).
LABEL_DOWNLOAD_OF = f"{GROUP}/download-of"
COMPONENT_LABEL = "app.kubernetes.io/component"
# How long a download pod may live (activeDeadlineSeconds, and its container's sleep): long enough
# to copy a large full model over a slow link; it is deleted as soon as the copy ends.
POD_SECONDS = 4 * 3600
# How long to wait for the pod to run: an image pull onto a node that does not have it yet.
START_SECONDS = 300.0
POLL_SECONDS = 0.5
# A stream that sends nothing for this long is dead.
READ_SECONDS = 120.0
READ_BYTES = 1 << 20
STDERR_KEPT = 4096
# The container's state reasons that waiting does not cure.
STUCK_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)
RESOURCES = {
    "requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "16Mi"},
    "limits": {"cpu": "1", "memory": "256Mi", "ephemeral-storage": "64Mi"},
}
# The exec protocol's channels (the first byte of every message).
STDOUT_CHANNEL, STDERR_CHANNEL, ERROR_CHANNEL = 1, 2, 3


@dataclass(frozen=True)
class Placement:
    """Where the pod must run: the node of a running pod that holds a ReadWriteOnce claim (None:
    anywhere the scheduler puts it), that pod's tolerations, and the pod (for messages)."""

    node: str | None = None
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    holder: str | None = None


@dataclass(frozen=True)
class CopiedFile:
    size: int
    sha256: str


def download_pod(
    job: Any, *, name: str, claim: str, image: str, placement: Placement, seconds: int = POD_SECONDS
) -> dict[str, Any]:
    """The manifest of the pod ``name`` that copies from ``claim`` for ``job`` (a ``tensorone.client.Job``)."""
    uid = (job.raw.get("metadata") or {}).get("uid")
    owner = [{"apiVersion": API_VERSION, "kind": "TrainingJob", "name": job.id, "uid": uid}] if uid else []
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": seconds,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 0,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TRAINING_USER,
            "runAsGroup": TRAINING_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER,
                "image": image,
                "command": ["sleep", str(seconds)],
                "securityContext": {
                    "runAsNonRoot": True,
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "resources": RESOURCES,
                "volumeMounts": [{"name": "checkpoints", "mountPath": DEFAULT_CHECKPOINT_DIR, "readOnly": True}],
            }
        ],
        "volumes": [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
    }
    if placement.node is not None:
        term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [placement.node]}]}
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    if placement.tolerations:
        spec["tolerations"] = placement.tolerations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": job.namespace,
            "labels": {LABEL_DOWNLOAD_OF: job.id, COMPONENT_LABEL: "download", "app.kubernetes.io/managed-by": "t1"},
            "ownerReferences": owner,
        },
        "spec": spec,
    }


def placement_for(claim: dict[str, Any], pods: list[dict[str, Any]]) -> Placement:
    """Where a pod that mounts ``claim`` can run, given the namespace's ``pods``: pinned to the
    node of a running pod that mounts it when it is ReadWriteOnce; refused when it is
    ReadWriteOncePod and in use."""
    name = claim["metadata"]["name"]
    modes = set((claim.get("spec") or {}).get("accessModes") or [])
    for pod in pods:
        status, spec = pod.get("status") or {}, pod.get("spec") or {}
        if status.get("phase") in ("Succeeded", "Failed") or not spec.get("nodeName"):
            continue
        claims = {(v.get("persistentVolumeClaim") or {}).get("claimName") for v in spec.get("volumes") or []}
        if name not in claims:
            continue
        holder = pod["metadata"]["name"]
        if "ReadWriteOncePod" in modes:
            raise InvalidJobState(
                f"the checkpoint claim {name} is ReadWriteOncePod and pod {holder} uses it: no other pod can mount "
                "it until that pod ends (t1 watch JOB waits for the job's end, t1 stop JOB stops it)"
            )
        if modes & {"ReadWriteMany", "ReadOnlyMany"}:
            return Placement()
        return Placement(node=spec["nodeName"], tolerations=list(spec.get("tolerations") or []), holder=holder)
    return Placement()


def trainer_image(job_id: str, pods: list[dict[str, Any]]) -> str:
    """The image to copy with when none is given: the job's training container's (the one image the
    cluster is known to pull, already on the node that ran it), else the built-in trainer's."""
    for pod in pods:
        if (pod["metadata"].get("labels") or {}).get(LABEL_JOB_NAME) != job_id:
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            if container.get("name") in TRAINER_CONTAINERS and container.get("image"):
                return str(container["image"])
    return DEFAULT_TRAINER_IMAGE


def pod_name(job_id: str) -> str:
    """``<job>-download-<5 random characters>``, as generateName would make it."""
    suffix = "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
    return f"{job_id[:40].rstrip('-.')}-download-{suffix}"


class ClaimCopy:
    """One download pod: ``copy(folder, into)`` creates it, waits for it, streams ``folder`` (a
    path under the claim's root) into ``into`` and deletes it, whatever happens."""

    def __init__(
        self,
        kube: Any,
        job: Any,
        *,
        claim: str,
        image: str | None = None,
        start_seconds: float = START_SECONDS,
        pod_seconds: int = POD_SECONDS,
    ) -> None:
        self.kube = kube
        self.job = job
        self.claim = claim
        self.image = image  # None: the job's trainer image, found when the copy starts
        self.start_seconds = start_seconds
        self.pod_seconds = pod_seconds
        self.pod_name: str | None = None  # once chosen

    def copy(self, folder: str, into: Path) -> dict[str, CopiedFile]:
        """Every file of ``folder`` on the claim, written under ``into`` with its size and SHA-256."""
        namespace = self.job.namespace
        claim = self.kube.core_object("read_namespaced_persistent_volume_claim", namespace, self.claim)
        if claim is None:
            raise InvalidJobState(
                f"job {self.job.id!r} has no checkpoint claim: {self.claim} does not exist in namespace "
                f"{namespace!r} (deleted, or the job never started), so its files are gone",
                field="checkpoint",
            )
        phase = (claim.get("status") or {}).get("phase")
        if phase != "Bound":
            raise InvalidJobState(
                f"the checkpoint claim {self.claim} is {phase or 'not bound'}, not Bound: no pod has written to it"
            )
        pods = self.kube.pods(namespace, "")
        placement = placement_for(claim, pods)
        # Named here, not by the API server (generateName): an interruption while the create is on its
        # way still knows which pod to delete.
        self.pod_name = pod_name(self.job.id)
        self.image = self.image or trainer_image(self.job.id, pods)
        manifest = download_pod(
            self.job,
            name=self.pod_name,
            claim=self.claim,
            image=self.image,
            placement=placement,
            seconds=self.pod_seconds,
        )
        refused = False
        try:
            try:
                self.kube.create_pod(namespace, manifest)
            except TensorOneError as error:
                refused = True  # no pod of ours by that name (a 409 would be another's)
                if isinstance(error, Forbidden):
                    raise Forbidden(
                        f"{error.message}; a download from the checkpoint claim creates a pod in namespace "
                        f"{namespace!r} (create, get and delete on pods, create on pods/exec: docs/output.md)"
                    ) from error
                raise
            self._wait_running(placement)
            return self._stream(folder, into)
        finally:
            if not refused:
                self._delete()

    # The pod ---------------------------------------------------------------------------------

    def _wait_running(self, placement: Placement) -> None:
        deadline = time.monotonic() + self.start_seconds
        last = "not created"
        while True:
            pod = self.kube.core_object("read_namespaced_pod", self.job.namespace, str(self.pod_name))
            if pod is None:
                raise TransferError(f"the download pod {self.pod_name} was deleted before the copy")
            ready, last = self._pod_state(pod, placement)
            if ready:
                return
            if time.monotonic() >= deadline:
                raise TransferError(
                    f"the download pod {self.pod_name} did not start within {self.start_seconds:.0f} s: {last}"
                )
            time.sleep(POLL_SECONDS)

    def _pod_state(self, pod: dict[str, Any], placement: Placement) -> tuple[bool, str]:
        """Whether the pod runs, else what it waits for; TransferError when waiting cannot help."""
        status = pod.get("status") or {}
        phase = status.get("phase") or "Pending"
        name = self.pod_name
        if phase in ("Succeeded", "Failed"):
            why = status.get("message") or status.get("reason") or "its container ended"
            raise TransferError(f"the download pod {name} ended ({phase}) before the copy: {why}")
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            if "running" in state and phase == "Running":
                return True, "running"
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                raise TransferError(
                    f"the download pod {name} cannot start its container: {waiting['reason']}: "
                    f"{waiting.get('message', '')} (image {self.image}; --image names another, "
                    "which needs tar and sleep)"
                )
            if waiting:
                return False, f"container {waiting.get('reason', 'waiting')}: {waiting.get('message', '')}".rstrip(": ")
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                said = f"not scheduled: {condition.get('message') or condition.get('reason')}"
                if placement.node is not None and condition.get("reason") == "Unschedulable":
                    # Pinned to the one node that can mount the claim: no other node helps.
                    raise TransferError(
                        f"the download pod {name} cannot run on node {placement.node}, where pod {placement.holder} "
                        f"holds the ReadWriteOnce claim {self.claim} ({said}); download once the job has ended "
                        "(t1 watch JOB), or export with spec.output"
                    )
                return False, said
        return False, f"{phase}, no container running yet"

    def _delete(self) -> None:
        """Delete the pod. A failure to (the connection lost) never fails the download: it is said,
        and the pod ends by its activeDeadlineSeconds and goes with the job."""
        try:
            self.kube.delete_pod(self.job.namespace, str(self.pod_name))
        except TensorOneError as error:
            warnings.warn(
                f"could not delete the download pod {self.pod_name} ({error}): it ends within "
                f"{self.pod_seconds} s (activeDeadlineSeconds) and is deleted with the job",
                stacklevel=2,
            )

    # The stream ------------------------------------------------------------------------------

    def _stream(self, folder: str, into: Path) -> dict[str, CopiedFile]:
        where = f"{DEFAULT_CHECKPOINT_DIR}/{folder}"
        command = ["tar", "-c", "-f", "-", "-C", where, "."]
        try:
            ws = self.kube.exec_stream(self.job.namespace, str(self.pod_name), CONTAINER, command)
        except Forbidden as refused:
            raise Forbidden(
                f"{refused.message}; a download from the checkpoint claim runs tar in its pod (create on pods/exec "
                f"in namespace {self.job.namespace!r}: docs/output.md)"
            ) from refused
        frames = ExecFrames(ws)
        copied: dict[str, CopiedFile] = {}
        try:
            try:
                with tarfile.open(fileobj=io.BufferedReader(frames, READ_BYTES), mode="r|") as archive:
                    for member in archive:
                        _take(archive, member, into, copied)
            except (tarfile.TarError, EOFError) as broken:
                frames.drain()
                raise self._failure(frames, folder, f"the tar stream is broken ({broken})") from None
            frames.drain()
        finally:
            frames.close()
        if (failure := frames.failure()) is not None:
            raise self._failure(frames, folder, failure)
        return copied

    def _failure(self, frames: ExecFrames, folder: str, what: str) -> TransferError:
        said = frames.failure() or what
        stderr = frames.stderr.decode(errors="replace").strip()
        detail = f": {stderr}" if stderr else ""
        return TransferError(
            f"copying {folder}/ from the checkpoint claim {self.claim} (pod {self.pod_name}) failed: {said}{detail}"
        )


def _take(archive: tarfile.TarFile, member: tarfile.TarInfo, into: Path, copied: dict[str, CopiedFile]) -> None:
    """One member of the stream: a regular file written under ``into`` with its digest; folders
    are made as their files come; anything else (a link, a device) is refused."""
    relative = _relative(member.name)
    if relative is None:
        return
    if member.isdir():
        return
    if not member.isfile():
        raise TransferError(f"{relative} is not a regular file (a link or a device): the trainer writes none")
    target = into / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    source = archive.extractfile(member)
    assert source is not None  # a regular file
    with target.open("wb") as handle:
        while chunk := source.read(READ_BYTES):
            digest.update(chunk)
            size += len(chunk)
            handle.write(chunk)
    copied[relative] = CopiedFile(size=size, sha256=digest.hexdigest())


_PART = re.compile(r"^[^/\x00]+$")


def _relative(name: str) -> str | None:
    """A member's path under the folder ('./a/b' -> 'a/b'; '.' -> None); TransferError for one
    that would leave it."""
    path = PurePosixPath(name)
    parts = [part for part in path.parts if part != "."]
    if path.is_absolute() or any(part == ".." or not _PART.match(part) for part in parts):
        raise TransferError(f"the tar stream holds a path outside the folder: {name!r}")
    return "/".join(parts) or None


class ExecFrames(io.RawIOBase):
    """The stdout of an exec stream as a file, read one WebSocket message at a time (so a large
    model never sits in memory); stderr (its end) and the error channel's Status are kept."""

    def __init__(self, ws: Any, *, read_seconds: float = READ_SECONDS) -> None:
        super().__init__()
        self.ws = ws
        self.ws.sock.settimeout(read_seconds)
        self.read_seconds = read_seconds
        self.pending = bytearray()
        self.stderr = bytearray()
        self.error = bytearray()
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending and not self.ended:
            self._next()
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        del self.pending[:count]
        return count

    def drain(self) -> None:
        """Read to the end of the stream (the Status comes last)."""
        while not self.ended:
            self._next()
            self.pending.clear()

    def failure(self) -> str | None:
        """What the error channel said when the command did not succeed; None when it did. A stream
        that ended without a Status failed too (the connection was lost)."""
        if not self.error:
            return "the stream ended without the command's exit status (the connection was lost)"
        try:
            status = json.loads(bytes(self.error))
        except ValueError:
            return bytes(self.error).decode(errors="replace")
        if status.get("status") == "Success":
            return None
        return str(status.get("message") or status.get("reason") or status)

    def _next(self) -> None:
        from websocket import ABNF, WebSocketConnectionClosedException, WebSocketTimeoutException

        try:
            opcode, frame = self.ws.sock.recv_data_frame(True)
        except WebSocketTimeoutException:
            raise TransferError(f"the exec stream sent nothing for {self.read_seconds:.0f} s") from None
        except (WebSocketConnectionClosedException, ConnectionError, OSError):
            self.ended = True
            return
        if opcode == ABNF.OPCODE_CLOSE:
            self.ended = True
            return
        data = bytes(frame.data or b"")
        if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not data:
            return
        channel, payload = data[0], data[1:]
        if channel == STDOUT_CHANNEL:
            self.pending += payload
        elif channel == STDERR_CHANNEL:
            self.stderr = (self.stderr + payload)[-STDERR_KEPT:]
        elif channel == ERROR_CHANNEL:
            self.error += payload

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        super().close()


def claim_folder(path: str) -> str:
    """A folder as the status names it (relative to the claim's root, or absolute under the
    checkpoint directory) as a path under the claim's root; TransferError for one outside it."""
    prefix = f"{DEFAULT_CHECKPOINT_DIR}/"
    relative = path[len(prefix) :] if path.startswith(prefix) else path
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or any(p in ("..", ".") for p in parts):
        raise InvalidJobState(
            f"the folder {path!r} is not on the checkpoint claim (mounted at {DEFAULT_CHECKPOINT_DIR})"
        )
    return "/".join(parts)
