"""A node, played on this machine: runs the pods of the PyTorchJobs in the emulator as processes.

``LocalNode`` does, for tests and benchmarks without a cluster, what the Training Operator and a
kubelet do for a PyTorchJob: for every replica it starts the container's command (the real trainer
under torchrun, or a custom job's argv) with the pod template's environment, the rank environment
the Training Operator injects, and the volumes mapped to folders of a work directory; it creates
the Pod objects with a pod IP, moves the PyTorchJob's status with the Training Operator's moves
(``tests.kube.training_operator``: Created, Running, Restarting, Succeeded, Failed, Suspended, and
the replica counts) as the processes run and exit, writes each container's termination message
into its Pod status, and on ``runPolicy.suspend`` deletes the pods the way the API server does:
SIGTERM, wait for exit (up to the grace period), record the terminated state, then remove.
``drain`` evicts one pod as a node drain (or a spot reclaim's termination handler) does through
the eviction API: condition DisruptionTarget, a delete with the grace period, SIGTERM; the pod's
end then goes the Training Operator's way like any other.

A projected volume gets its sources' files: the keys of a ConfigMap, and a service-account token
for the pod from ``tokens`` (the cluster's ``TokenIssuer``) with the audience asked for.
``close_report_ports`` plays a network that keeps the operator from the pods (a NetworkPolicy):
the Pod objects of the pods started afterwards name a report port where every connection is
closed at once and counted (``report_port_connections``), while the trainer serves on its own.

Only what a node cannot share with its neighbours is mapped: mount paths become folders under
``workdir`` (a PVC is one folder per claim, kept across pod restarts, as a volume is), absolute
paths inside ConfigMap files that point into a mount are rewritten to those folders, and the
container's ``report`` port is mapped to a free local port (every pod of this node shares
127.0.0.1), written where the pod spec and the resolved job carry it.

Pods created on their own, without a controller (``t1 download``'s pod), are scheduled here and run
the same way (``tests.kube.standalone_pods``). ``pods/exec`` into any running pod of this node runs
the command as a local process with the container's paths and environment: the node registers its
runtime with the emulator under its name (``tests.kube.exec``).

Images are not pulled: this machine's Python environment plays every image. The command runs as
it is written (an argument vector, no shell), with ``python``/``python3`` resolved to the node's
interpreter and ``torchrun`` to ``python -m torch.distributed.run``; the trainer image needs
nothing more (its code is installed here). What a custom image ships beside that is given by
``images``: for an image reference, the folders inside the image and the local folders that hold
their files (``{"registry.example.com/ml/bigram:1.0": {"/app": Path("examples/custom")}}``), so
``python /app/train_bigram.py`` runs ``examples/custom/train_bigram.py``. Paths in the command and
the environment are mapped like mount paths.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests import factories
from tests.factories import PYTORCHJOB
from tests.kube.exec import ExecTarget
from tests.kube.loopback import LOOPBACK, free_port
from tests.kube.server import ApiStatusError, EmulatorServer
from tests.kube.tokens import TokenIssuer
from tests.kube.training_operator import JobConditionType, ReplicaStatus, after_pod_failure, move_child

if TYPE_CHECKING:
    from tests.kube.kueue import KueueController
    from tests.kube.trainer_controller import TrainerController

POD_FINALIZER = "node.tensorone.test/kubelet"
POD_IP = LOOPBACK
NODE_NAME = "local-node"


@dataclass(frozen=True)
class ContainerContext:
    """A running container as an exec into it sees it: its name, the container paths mapped to
    local folders (mounts, then the image's own), its environment and working directory."""

    container: str
    paths: list[tuple[str, Path]]
    env: dict[str, str]
    cwd: Path


@dataclass
class PodProcess:
    """One replica's container, running as a local process."""

    name: str
    replica_type: str
    index: int
    process: subprocess.Popen[bytes]
    termination_log: Path
    log_path: Path
    report_port: int | None
    container: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    terminating: bool = False
    # When an evicted pod's container is killed if it has not ended (its grace period), monotonic.
    kill_at: float | None = None


@dataclass
class JobRun:
    """What the node knows of one PyTorchJob."""

    namespace: str
    name: str
    uid: str
    pods: list[PodProcess] = field(default_factory=list)
    restarts: int = 0
    started_at: float | None = None
    finished: bool = False
    suspended: bool = False
    kind: str = "PyTorchJob"


class LocalNode:
    """Plays the Training Operator and the kubelet for the PyTorchJobs in ``server``.

    ``python`` runs ``torchrun`` (as ``python -m torch.distributed.run``) and ``python``/``python3``
    commands; ``images`` maps folders inside an image to local folders (see the module docstring);
    ``extra_env`` is added to every container (for example a test hook).
    """

    def __init__(
        self,
        server: EmulatorServer,
        workdir: Path,
        *,
        python: str = sys.executable,
        images: Mapping[str, Mapping[str, Path]] | None = None,
        extra_env: dict[str, str] | None = None,
        interval: float = 0.1,
    ) -> None:
        self.server = server
        self.api = server.api
        self.workdir = workdir
        self.python = python
        self.images = {image: dict(folders) for image, folders in (images or {}).items()}
        self.extra_env = dict(extra_env or {})
        self.interval = interval
        self.runs: dict[tuple[str, str], JobRun] = {}
        self.tokens = TokenIssuer()
        self._closed_port: ClosedPort | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []
        from tests.kube.trainer_controller import TrainerController  # it drives this node's pods

        self.trainer: TrainerController = TrainerController(self)
        from tests.kube.kueue import KueueController  # it admits the children of queued jobs

        self.kueue: KueueController = KueueController(self)
        from tests.kube.standalone_pods import StandalonePods  # it runs pods created without a controller

        self.standalone: StandalonePods = StandalonePods(self)
        # The running containers an exec can reach, by (namespace, pod name).
        self.containers: dict[tuple[str, str], ContainerContext] = {}
        # Evictions asked for (namespace, job, pod name), carried out by the node's loop.
        self._evictions: queue.SimpleQueue[tuple[str, str, str]] = queue.SimpleQueue()

    # Lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> LocalNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.server.emulator.runtimes[NODE_NAME] = self.exec_target
        self._thread = threading.Thread(target=self._loop, name="local-node", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.trainer.close()
        if self._closed_port is not None:
            self._closed_port.close()
        for run in self.runs.values():
            for pod in run.pods:
                if pod.process.poll() is None:
                    pod.process.kill()
                    pod.process.wait(timeout=10)

    def close_report_ports(self) -> None:
        """Keep whoever reads the Pod objects from the report ports of the pods started from now on."""
        if self._closed_port is None:
            self._closed_port = ClosedPort()

    @property
    def report_port_connections(self) -> int:
        """Connections made to the closed report port so far."""
        return self._closed_port.connections if self._closed_port is not None else 0

    def pod_log(self, namespace: str, job: str, replica: str = "master", index: int = 0) -> str:
        """The output of a replica's latest process (for assertions and failure messages); a
        TrainJob's rank 0 for the master."""
        run = self.runs.get((namespace, job))
        if run is not None and run.kind == "TrainJob" and replica == "master":
            replica = "node"
        path = self.workdir / "logs" / namespace / f"{job}-{replica}-{index}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def exec_target(self, namespace: str, pod: str, container: str, command: list[str]) -> ExecTarget:
        """How ``command`` runs in a running container of this node (the runtime of pods/exec):
        its paths mapped as the container's own command's are, in its environment; LookupError
        for a container this node does not run."""
        context = self.containers.get((namespace, pod))
        if context is None or context.container != container:
            raise LookupError(f"no running container {container} in pod {namespace}/{pod} on this node")
        argv = self._local_argv([_map_path(word, context.paths) for word in command])
        return ExecTarget(argv=argv, env=dict(context.env), cwd=str(context.cwd))

    def claim_dir(self, namespace: str, claim: str) -> Path:
        """The folder that stands for a PersistentVolumeClaim."""
        return self.workdir / "volumes" / namespace / claim

    def drain(self, namespace: str, job: str, replica: str = "master", index: int = 0) -> None:
        """Drain the node of one running pod of a job (``replica`` master or worker of a PyTorchJob,
        node of a TrainJob), as ``kubectl drain`` evicts it: the eviction API sets condition
        DisruptionTarget (reason EvictionByEvictionAPI) on the pod and deletes it with its grace
        period; the kubelet sends SIGTERM and kills the container if it has not ended when the
        grace period is over. Done by the node's loop, soon after the call."""
        self._evictions.put((namespace, job, f"{job}-{replica.lower()}-{index}"))

    # The loop ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as error:  # kept for the test to see; the node goes on
                self.errors.append(error)
            self._stop.wait(self.interval)
        self.server.emulator.runtimes.pop(NODE_NAME, None)
        self.standalone.stop()

    def _tick(self) -> None:
        self.kueue.tick()
        while not self._evictions.empty():
            self._evict(*self._evictions.get())
        self.standalone.tick()
        jobs = {
            (job["metadata"]["namespace"], job["metadata"]["name"]): job
            for job in self.api.list(PYTORCHJOB, "PyTorchJob")
        }
        for key, run in list(self.runs.items()):
            if run.kind != "PyTorchJob":
                continue
            job = jobs.get(key)
            if job is None or job["metadata"]["uid"] != run.uid or job["metadata"].get("deletionTimestamp"):
                self._kill(run)
                del self.runs[key]
        for key, job in jobs.items():
            if job["metadata"].get("deletionTimestamp"):
                continue
            if key not in self.runs:
                self.runs[key] = JobRun(key[0], key[1], job["metadata"]["uid"])
                self._move(job, self.runs[key])
            self._reconcile(job, self.runs[key])
        self.trainer.tick()

    def _reconcile(self, job: dict[str, Any], run: JobRun) -> None:
        policy = job["spec"].get("runPolicy") or {}
        if run.finished:
            return
        if policy.get("suspend"):
            if run.pods:
                self._terminate(job, run)
            if not run.pods and not run.suspended:
                run.suspended = True
                run.started_at = None
                self._move(job, run, JobConditionType.suspended)
            return
        run.suspended = False
        if not run.pods:
            self._start_pods(job, run)
            self._move(job, run, JobConditionType.running)
            return
        self._watch_pods(job, run, policy)

    # Pods --------------------------------------------------------------------------------------

    def _start_pods(self, job: dict[str, Any], run: JobRun) -> None:
        replicas = job["spec"]["pytorchReplicaSpecs"]
        ordered = [("Master", replicas["Master"])] + ([("Worker", replicas["Worker"])] if "Worker" in replicas else [])
        nodes = sum(int(spec.get("replicas", 1)) for _, spec in ordered)
        nproc = str(job["spec"].get("nprocPerNode") or "1")
        master_port = free_port()
        rank = 0
        run.pods = []
        for replica_type, spec in ordered:
            for index in range(int(spec.get("replicas", 1))):
                injected = {
                    "MASTER_ADDR": POD_IP,
                    "MASTER_PORT": str(master_port),
                    "WORLD_SIZE": str(nodes * int(nproc) if nproc.isdigit() else nodes),
                    "RANK": str(rank),
                    "PET_MASTER_ADDR": POD_IP,
                    "PET_MASTER_PORT": str(master_port),
                    "PET_NNODES": str(nodes),
                    "PET_NPROC_PER_NODE": nproc,
                    "PET_NODE_RANK": str(rank),
                    "PYTHONUNBUFFERED": "1",
                }
                run.pods.append(self._start_pod(job, replica_type, index, spec["template"], injected))
                rank += 1
        run.started_at = time.monotonic()

    def _start_pod(
        self, job: dict[str, Any], replica_type: str, index: int, template: dict[str, Any], injected: dict[str, str]
    ) -> PodProcess:
        namespace, job_name = job["metadata"]["namespace"], job["metadata"]["name"]
        pod_name = f"{job_name}-{replica_type.lower()}-{index}"
        pod_dir = self.workdir / "pods" / namespace / pod_name
        pod_dir.mkdir(parents=True, exist_ok=True)
        pod_spec = template["spec"]
        container = next(c for c in pod_spec["containers"] if c["name"] in TRAINER_CONTAINERS)
        report_port = _report_port(container)
        local_report_port = free_port() if report_port is not None else None
        mounts = self._mount_volumes(
            namespace,
            pod_name=pod_name,
            pod_spec=pod_spec,
            container=container,
            pod_dir=pod_dir,
            report_port=report_port,
            local_report_port=local_report_port,
        )

        # The image's own folders map like mounts (a mount over an image folder wins, as it hides it).
        image_folders = sorted(
            self.images.get(container.get("image", ""), {}).items(), key=lambda m: len(m[0]), reverse=True
        )
        paths = [*mounts, *image_folders]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")}
        env.update(injected)
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = _expand(item["value"], env)
            elif "fieldRef" in (item.get("valueFrom") or {}):
                env[item["name"]] = self._field_value(namespace, pod_name, item["valueFrom"]["fieldRef"], index)
            elif "secretKeyRef" in (item.get("valueFrom") or {}):
                value = self._secret_value(namespace, item["valueFrom"]["secretKeyRef"])
                if value is not None:
                    env[item["name"]] = value
        env = {k: _map_path(v, paths) for k, v in env.items()}
        termination_log = pod_dir / "termination-log"
        termination_log.write_text("")
        env["TENSORONE_TERMINATION_LOG"] = str(termination_log)
        if local_report_port is not None:
            env["TENSORONE_REPORT_PORT"] = str(local_report_port)
        env.update(self.extra_env)

        argv = [_expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
        argv = self._local_argv([_map_path(a, paths) for a in argv])
        log_path = self.workdir / "logs" / namespace / f"{pod_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, env=env, cwd=pod_dir, stdout=log, stderr=subprocess.STDOUT)
        self.containers[(namespace, pod_name)] = ContainerContext(container["name"], paths, env, pod_dir)
        pod = PodProcess(
            pod_name, replica_type.lower(), index, process, termination_log, log_path, local_report_port, container
        )
        self._create_pod_object(
            job,
            pod=pod,
            template=template,
            container=container,
            report_port=report_port,
            local_report_port=local_report_port,
        )
        return pod

    def _mount_volumes(
        self,
        namespace: str,
        *,
        pod_name: str,
        pod_spec: dict[str, Any],
        container: dict[str, Any],
        pod_dir: Path,
        report_port: int | None,
        local_report_port: int | None,
    ) -> list[tuple[str, Path]]:
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        mounts: list[tuple[str, Path]] = []
        config_maps: list[tuple[dict[str, Any], Path]] = []
        projected: list[tuple[list[dict[str, Any]], Path]] = []
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                local = self.claim_dir(namespace, volume["persistentVolumeClaim"]["claimName"])
            elif "configMap" in volume:
                local = pod_dir / "volumes" / mount["name"]
                config_maps.append((volume["configMap"], local))
            elif "projected" in volume:
                local = pod_dir / "volumes" / mount["name"]
                projected.append((volume["projected"].get("sources") or [], local))
            else:  # emptyDir and the rest: a fresh folder per pod
                local = pod_dir / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            mounts.append((mount["mountPath"], local))
        mounts.sort(key=lambda m: len(m[0]), reverse=True)
        for source, local in config_maps:
            config_map = self.api.get("v1", "ConfigMap", source["name"], namespace)
            for key, text in (config_map.get("data") or {}).items():
                (local / key).write_text(_map_config_text(text, mounts, report_port, local_report_port))
        account = pod_spec.get("serviceAccountName") or "default"
        for sources, local in projected:
            for source in sources:
                if "serviceAccountToken" in source:
                    token = source["serviceAccountToken"]
                    issued = self.tokens.issue(
                        namespace=namespace,
                        pod=pod_name,
                        service_account=account,
                        audience=token["audience"],
                        expiration_seconds=int(token.get("expirationSeconds") or 3600),
                    )
                    (local / token["path"]).write_text(issued)
                elif "configMap" in source:
                    data = self.api.get("v1", "ConfigMap", source["configMap"]["name"], namespace).get("data") or {}
                    for item in source["configMap"].get("items") or [{"key": k, "path": k} for k in data]:
                        (local / item["path"]).write_text(data[item["key"]])
        return mounts

    def _local_argv(self, argv: list[str]) -> list[str]:
        if not argv:
            raise RuntimeError("the container has no command: the node cannot run an image's entrypoint")
        program, rest = argv[0], argv[1:]
        if program == "torchrun":
            return [self.python, "-m", "torch.distributed.run", *rest]
        if program in ("python", "python3"):
            return [self.python, *rest]
        return argv

    @staticmethod
    def _field_value(namespace: str, pod_name: str, ref: dict[str, Any], index: int) -> str:
        """The downward API's value of a ``fieldRef`` (the fields the operator's and Trainer v2's
        pods use; an indexed Job's pod has its completion index as an annotation)."""
        values = {
            "status.podIP": POD_IP,
            "metadata.name": pod_name,
            "metadata.namespace": namespace,
            COMPLETION_INDEX_FIELD: str(index),
        }
        if ref["fieldPath"] not in values:
            raise ValueError(f"fieldRef {ref['fieldPath']!r} is not played by LocalNode (plays {sorted(values)})")
        return values[ref["fieldPath"]]

    def _secret_value(self, namespace: str, ref: dict[str, Any]) -> str | None:
        import base64

        secret = self.api.find("v1", "Secret", ref["name"], namespace)
        data = (secret or {}).get("data") or {}
        return base64.b64decode(data[ref["key"]]).decode() if ref["key"] in data else None

    def _create_pod_object(
        self,
        job: dict[str, Any],
        *,
        pod: PodProcess,
        template: dict[str, Any],
        container: dict[str, Any],
        report_port: int | None,
        local_report_port: int | None,
    ) -> None:
        namespace, job_name = job["metadata"]["namespace"], job["metadata"]["name"]
        if job["kind"] == "JobSet":  # the labels JobSet and the Job controller put on an indexed Job's pods
            labels = {
                **(template.get("metadata", {}).get("labels") or {}),
                "jobset.sigs.k8s.io/jobset-name": job_name,
                "jobset.sigs.k8s.io/replicatedjob-name": pod.replica_type,
                "jobset.sigs.k8s.io/job-index": "0",
                "batch.kubernetes.io/job-completion-index": str(pod.index),
            }
        else:
            labels = {
                **(template.get("metadata", {}).get("labels") or {}),
                "training.kubeflow.org/job-name": job_name,
                "training.kubeflow.org/operator-name": "pytorchjob-controller",
                "training.kubeflow.org/replica-type": pod.replica_type,
                "training.kubeflow.org/replica-index": str(pod.index),
            }
            if pod.replica_type == "master":
                labels["training.kubeflow.org/job-role"] = "master"
        spec = yaml.safe_load(yaml.safe_dump(template["spec"]))
        if report_port is not None and self._closed_port is not None:
            local_report_port = self._closed_port.port  # what the operator reads: a port that lets no one in
        if report_port is not None:
            for c in spec["containers"]:
                for port in c.get("ports", []):
                    if port.get("name") == "report":
                        port["containerPort"] = local_report_port
                for item in c.get("env", []):
                    if item.get("name") == "TENSORONE_REPORT_PORT" and "value" in item:
                        item["value"] = str(local_report_port)
        with contextlib.suppress(ApiStatusError):  # a pod left from a crashed try
            self._remove_pod(namespace, pod.name)
        self.api.create(
            factories.pod(
                pod.name, job, spec={**spec, "nodeName": NODE_NAME}, labels=labels, finalizers=[POD_FINALIZER]
            )
        )
        status = factories.running_pod_status(container, pod_ip=POD_IP, started_at=factories.now())
        self.api.patch("v1", "Pod", pod.name, {"status": status}, namespace, subresource="status")

    def _record_exit(self, namespace: str, pod: PodProcess) -> None:
        code = pod.process.returncode
        if code < 0:  # killed by a signal: the kubelet reports 128 + the signal's number
            code = 128 - code
        pod.exit_code = code
        message = pod.termination_log.read_text(errors="replace")[:4096] if pod.termination_log.exists() else ""
        status = factories.terminated_pod_status(
            pod.container, exit_code=code, message=message, finished_at=factories.now()
        )
        self.api.patch("v1", "Pod", pod.name, {"status": status}, namespace, subresource="status")

    def _remove_pod(self, namespace: str, name: str) -> None:
        self.api.patch("v1", "Pod", name, {"metadata": {"finalizers": None}}, namespace)
        with contextlib.suppress(ApiStatusError):
            self.api.delete("v1", "Pod", name, namespace)

    def _evict(self, namespace: str, job: str, pod_name: str) -> None:
        """The eviction of a running pod (see ``drain``)."""
        run = self.runs.get((namespace, job))
        pod = next((p for p in run.pods if p.name == pod_name and p.exit_code is None), None) if run else None
        if pod is None:
            raise LookupError(f"no running pod {pod_name} of job {namespace}/{job} to drain")
        grace = float((self.api.get("v1", "Pod", pod_name, namespace)["spec"]).get("terminationGracePeriodSeconds", 30))
        disruption = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting",
            "lastTransitionTime": factories.timestamp(),
        }
        self.api.patch("v1", "Pod", pod_name, {"status": {"conditions": [disruption]}}, namespace, subresource="status")
        self.api.delete("v1", "Pod", pod_name, namespace)  # held by the kubelet's finalizer until it has ended
        pod.kill_at = time.monotonic() + grace
        if pod.process.poll() is None:
            pod.process.send_signal(signal.SIGTERM)

    @staticmethod
    def _kill_past_grace(pod: PodProcess) -> None:
        """Kill the container of an evicted pod that has not ended within its grace period."""
        if pod.kill_at is not None and time.monotonic() > pod.kill_at and pod.process.poll() is None:
            pod.process.kill()
            pod.process.wait(timeout=10)

    def _watch_pods(self, job: dict[str, Any], run: JobRun, policy: dict[str, Any]) -> None:
        namespace = run.namespace
        for pod in run.pods:
            self._kill_past_grace(pod)
            if pod.exit_code is None and pod.process.poll() is not None:
                self._record_exit(namespace, pod)
        deadline = policy.get("activeDeadlineSeconds")
        if deadline and run.started_at is not None and time.monotonic() - run.started_at > float(deadline):
            self._kill(run)
            self._finish(
                job, run, JobConditionType.failed, "DeadlineExceeded", "PyTorchJob has run past its active deadline."
            )
            return
        failed = [p for p in run.pods if p.exit_code not in (None, 0)]
        if failed:
            self._kill(run)
            replica = failed[0].replica_type.capitalize()
            limit = policy.get("backoffLimit")
            verdict = after_pod_failure(
                run.name,
                replica,
                job["spec"]["pytorchReplicaSpecs"][replica].get("restartPolicy", "OnFailure"),
                int(failed[0].exit_code or 0),
                restarts=run.restarts,
                backoff_limit=None if limit is None else int(limit),
            )
            if verdict.restart:
                # The whole job restarts (v1.9 recreates the failed pod; a torch rendezvous
                # then needs every peer anew, which is what recreating them all plays).
                run.restarts += 1
                self._start_pods(job, run)
                self._move(job, run, JobConditionType.restarting, message=verdict.message)
                return
            self._finish(job, run, JobConditionType.failed, verdict.reason, verdict.message)
            return
        if run.pods[0].exit_code == 0:
            self._kill(run)
            self._finish(job, run, JobConditionType.succeeded)

    def _terminate(self, job: dict[str, Any], run: JobRun) -> None:
        """Delete the pods gracefully: deletionTimestamp, SIGTERM, wait, record the exit, remove."""
        grace = float(
            job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        )
        self._terminate_pods(run, grace)

    def _terminate_pods(self, run: JobRun, grace: float) -> None:
        """Delete a run's pods gracefully within ``grace`` seconds."""
        for pod in run.pods:
            if not pod.terminating:
                pod.terminating = True
                with contextlib.suppress(ApiStatusError):
                    self.api.delete("v1", "Pod", pod.name, run.namespace)
                if pod.process.poll() is None:
                    pod.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for pod in run.pods:
            try:
                pod.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pod.process.kill()
                pod.process.wait()
            if pod.exit_code is None:
                self._record_exit(run.namespace, pod)
            with contextlib.suppress(ApiStatusError):
                self._remove_pod(run.namespace, pod.name)
        run.pods = []

    def _kill(self, run: JobRun) -> None:
        for pod in run.pods:
            if pod.process.poll() is None:
                pod.process.kill()
                pod.process.wait(timeout=10)

    def _finish(
        self,
        job: dict[str, Any],
        run: JobRun,
        state: JobConditionType,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        run.finished = True
        self._move(job, run, state, reason=reason, message=message)
        # cleanPodPolicy Running: pods still running would be deleted; finished ones stay.

    # Status ------------------------------------------------------------------------------------

    def _move(
        self,
        job: dict[str, Any],
        run: JobRun,
        *states: JobConditionType,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """Write the PyTorchJob's status moved into ``states``, with the replicas counted."""
        counts = {replica: ReplicaStatus() for replica in job["spec"]["pytorchReplicaSpecs"]}
        for pod in run.pods:
            count = counts.setdefault(pod.replica_type.capitalize(), ReplicaStatus())
            if pod.exit_code == 0:
                count.succeeded += 1
            elif pod.exit_code is not None:
                count.failed += 1
            elif pod.process.poll() is None:
                count.active += 1
        move_child(self.api, run.name, run.namespace, *states, replicas=counts, reason=reason, message=message)


class ClosedPort:
    """A port on the loopback that closes every connection at once, and counts them."""

    def __init__(self) -> None:
        self._socket = socket.create_server((POD_IP, 0))
        self.port: int = self._socket.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, name="closed-report-port", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return  # closed
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._socket.close()
        self._thread.join(timeout=10)


_VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (no shell): unknown variables stay as written."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1), m.group(0)), value)


# This checkout and this Python environment play the image's own files: a path into them (the
# example model, the interpreter) stays as it is, even where a mount such as the /tmp emptyDir
# would cover it (a checkout under /tmp).
_IMAGE_FILES = tuple(str(path) for path in (factories.REPO, Path(sys.prefix)))


def _map_path(value: str, mounts: list[tuple[str, Path]]) -> str:
    """A path inside a mount, moved to the folder standing for it (longest mount first)."""
    if any(value == root or value.startswith(root + "/") for root in _IMAGE_FILES):
        return value
    for mount_path, local in mounts:
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return str(local) + value[len(mount_path.rstrip("/")) :]
    return value


def _map_config_text(
    text: str, mounts: list[tuple[str, Path]], report_port: int | None, local_report_port: int | None
) -> str:
    """A ConfigMap file with the absolute paths that point into mounts moved, and the report port
    mapped (YAML files only; anything else is left as it is)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if not isinstance(data, dict):
        return text

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (local_report_port if k == "reportPort" and v == report_port else walk(v)) for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and node.startswith("/"):
            return _map_path(node, mounts)
        return node

    return yaml.safe_dump(walk(data), sort_keys=False)


TRAINER_CONTAINERS = ("pytorch", "node")  # a PyTorchJob's training container, and a TrainJob's
COMPLETION_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def _report_port(container: dict[str, Any]) -> int | None:
    """The container's report port: its port named ``report``, else the one its environment gives."""
    for port in container.get("ports", []):
        if port.get("name") == "report":
            return int(port["containerPort"])
    for item in container.get("env", []):
        if item.get("name") == "TENSORONE_REPORT_PORT" and str(item.get("value", "")).isdigit():
            return int(item["value"])
    return None
