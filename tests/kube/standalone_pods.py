"""Pods created on their own, without a controller, scheduled and run by the local node.

A pod no controller owns (no ownerReference with ``controller: true``; ``t1 download``'s pod, a
debug pod) is what the scheduler and a kubelet handle alone. ``StandalonePods`` plays both for the
one node of ``LocalNode``:

- scheduling: a pod whose required node affinity (``matchFields`` on ``metadata.name``, or
  ``kubernetes.io/hostname``) or ``nodeSelector`` leaves this node out, or that mounts a claim
  that does not exist, stays Pending with condition PodScheduled False, reason Unschedulable and
  the scheduler's message; any other is bound to the node (``spec.nodeName``);
- running: its one container's command as a local process, volumes mapped as for training pods
  (a claim is the node's folder for it), status Running with the container running; its exit is
  the container's termination (Succeeded or Failed, with the exit code);
- ``activeDeadlineSeconds``: past it the container is killed and the pod is Failed with reason
  DeadlineExceeded, as the kubelet does;
- a deleted pod's container is killed.

Not played: init containers, several containers, restartPolicy other than Never, resource fit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests import factories
from tests.kube.server import ApiStatusError

if TYPE_CHECKING:
    from tests.kube.node import LocalNode

HOSTNAME_LABEL = "kubernetes.io/hostname"


@dataclass
class StandalonePod:
    """A standalone pod this node runs."""

    namespace: str
    name: str
    uid: str
    container: dict[str, Any]
    process: subprocess.Popen[bytes]
    started_at: float
    deadline_seconds: float | None


class StandalonePods:
    """The scheduler and the kubelet of ``node`` for standalone pods; ``tick`` does one round."""

    def __init__(self, node: LocalNode) -> None:
        self.node = node
        self.running: dict[str, StandalonePod] = {}  # by pod uid
        self._unschedulable: set[str] = set()

    def tick(self) -> None:
        pods = [pod for pod in self.node.api.list("v1", "Pod") if _standalone(pod)]
        present = {pod["metadata"]["uid"] for pod in pods if not pod["metadata"].get("deletionTimestamp")}
        for uid in set(self.running) - present:
            self._kill(self.running.pop(uid))
        for pod in pods:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            uid = meta["uid"]
            if uid in self.running:
                self._watch(self.running[uid])
            elif uid in present and not spec.get("nodeName") and uid not in self._unschedulable:
                self._schedule(pod)

    def stop(self) -> None:
        for pod in self.running.values():
            self._kill(pod)
        self.running.clear()

    # Scheduling ----------------------------------------------------------------------------

    def _schedule(self, pod: dict[str, Any]) -> None:
        from tests.kube.node import NODE_NAME

        meta, spec = pod["metadata"], pod["spec"]
        namespace = meta["namespace"]
        reason = _affinity_problem(spec, NODE_NAME) or self._claim_problem(namespace, spec)
        if reason is not None:
            self._unschedulable.add(meta["uid"])
            condition = {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": f"0/1 nodes are available: {reason}. preemption: 0/1 nodes are available: 1 Preemption "
                "is not helpful for scheduling.",
                "lastTransitionTime": factories.timestamp(),
            }
            self._patch_status(namespace, meta["name"], {"phase": "Pending", "conditions": [condition]})
            return
        self.node.api.patch("v1", "Pod", meta["name"], {"spec": {"nodeName": NODE_NAME}}, namespace)
        self._start(pod)

    def _claim_problem(self, namespace: str, spec: dict[str, Any]) -> str | None:
        for volume in spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and self.node.api.find("v1", "PersistentVolumeClaim", claim, namespace) is None:
                return f'persistentvolumeclaim "{claim}" not found'
        return None

    # Running -------------------------------------------------------------------------------

    def _start(self, pod: dict[str, Any]) -> None:
        from tests.kube.node import POD_IP, ContainerContext, _map_path

        meta, spec = pod["metadata"], pod["spec"]
        namespace, name = meta["namespace"], meta["name"]
        (container,) = spec["containers"]
        pod_dir = self.node.workdir / "pods" / namespace / name
        pod_dir.mkdir(parents=True, exist_ok=True)
        mounts = self.node._mount_volumes(
            namespace,
            pod_name=name,
            pod_spec=spec,
            container=container,
            pod_dir=pod_dir,
            report_port=None,
            local_report_port=None,
        )
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")}
        env.update(self.node.extra_env)
        env.update({item["name"]: item["value"] for item in container.get("env") or [] if "value" in item})
        env = {k: _map_path(v, mounts) for k, v in env.items()}
        argv = self.node._local_argv(
            [_map_path(word, mounts) for word in (container.get("command") or []) + (container.get("args") or [])]
        )
        log_path = self.node.workdir / "logs" / namespace / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, env=env, cwd=pod_dir, stdout=log, stderr=subprocess.STDOUT)
        deadline = spec.get("activeDeadlineSeconds")
        self.running[meta["uid"]] = StandalonePod(
            namespace,
            name,
            meta["uid"],
            container,
            process,
            time.monotonic(),
            float(deadline) if deadline is not None else None,
        )
        self.node.containers[(namespace, name)] = ContainerContext(container["name"], mounts, env, pod_dir)
        status = factories.running_pod_status(container, pod_ip=POD_IP, started_at=factories.now())
        self._patch_status(namespace, name, status)

    def _watch(self, pod: StandalonePod) -> None:
        if pod.deadline_seconds is not None and time.monotonic() - pod.started_at > pod.deadline_seconds:
            self._kill(pod)
            self.running.pop(pod.uid, None)
            status = factories.terminated_pod_status(
                pod.container, exit_code=137, message="", finished_at=factories.now()
            )
            status |= {
                "phase": "Failed",
                "reason": "DeadlineExceeded",
                "message": "Pod was active on the node longer than the specified deadline",
            }
            self._patch_status(pod.namespace, pod.name, status)
            return
        code = pod.process.poll()
        if code is None:
            return
        self.running.pop(pod.uid, None)
        self.node.containers.pop((pod.namespace, pod.name), None)
        code = 128 - code if code < 0 else code
        status = factories.terminated_pod_status(pod.container, exit_code=code, message="", finished_at=factories.now())
        self._patch_status(pod.namespace, pod.name, status)

    def _kill(self, pod: StandalonePod) -> None:
        self.node.containers.pop((pod.namespace, pod.name), None)
        if pod.process.poll() is None:
            pod.process.kill()
            pod.process.wait(timeout=10)

    def _patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        with contextlib.suppress(ApiStatusError):  # deleted meanwhile
            self.node.api.patch("v1", "Pod", name, {"status": status}, namespace, subresource="status")


def _standalone(pod: dict[str, Any]) -> bool:
    return not any(ref.get("controller") for ref in pod["metadata"].get("ownerReferences") or [])


def _affinity_problem(spec: dict[str, Any], node: str) -> str | None:
    """Why the pod's node selection leaves ``node`` out (the scheduler's words), or None."""
    selector = spec.get("nodeSelector") or {}
    if HOSTNAME_LABEL in selector and selector[HOSTNAME_LABEL] != node:
        return "1 node(s) didn't match Pod's node affinity/selector"
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(_term_matches(term, node) for term in terms):
        return "1 node(s) didn't match Pod's node affinity/selector"
    return None


def _term_matches(term: dict[str, Any], node: str) -> bool:
    """A node selector term against this node (its name, and its hostname label, the same)."""
    requirements = [(r, node) for r in term.get("matchFields") or [] if r.get("key") == "metadata.name"]
    requirements += [(r, node) for r in term.get("matchExpressions") or [] if r.get("key") == HOSTNAME_LABEL]
    for requirement, value in requirements:
        inside = value in (requirement.get("values") or [])
        if inside != (requirement.get("operator") == "In"):
            return False
    return True
