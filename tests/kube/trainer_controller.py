"""Kubeflow Trainer v2.2's controller and JobSet v0.11's, played on ``LocalNode``: TrainJob ->
JobSet -> the pods of its indexed Job, as processes.

For each TrainJob in the emulator:

- the JobSet named like it is made from the runtime it names (``runtimeRef``): the runtime's
  JobSet template, with ``spec.trainer`` applied to the container ``node`` of the replicated job
  ``node`` (image, command, args, env, resources; ``numNodes`` pods of an indexed Job), the torch
  plugin's variables added (``PET_NNODES``, ``PET_NPROC_PER_NODE``, ``PET_NODE_RANK`` from the pod's
  completion index, ``PET_MASTER_ADDR`` = ``<job>-node-0-0.<job>``, ``PET_MASTER_PORT`` = 29500 and
  that container port), then each ``runtimePatches`` entry (labels and annotations, volumes,
  containers' env and mounts, placement, security contexts); it is created owned by the TrainJob
  and validated by the emulator like any write;
- ``spec.suspend`` is copied to the JobSet, and while either is suspended the JobSet is made
  again from the TrainJob (a runtime patch changed meanwhile reaches the next pods); a suspended JobSet's pods are deleted gracefully and
  the TrainJob gets Suspended True (reason Suspended), and Suspended False (reason Resumed) when
  the pods start again;
- a failed pod fails its Job (backoffLimit 0); the Job's ``podFailurePolicy`` says whether by that
  policy (a FailJob rule on the exit code) or by its backoff limit, and the JobSet's
  ``failurePolicy`` rules then fail the JobSet or restart it (every pod recreated) while
  ``status.restarts`` is below ``maxRestarts``;
- all pods exiting 0 complete the JobSet (Completed True); Completed and Failed are copied to the
  TrainJob as Complete and Failed, and ``jobsStatus`` mirrors the replicated job's counts;
- ``activeDeadlineSeconds`` past the (re)start fails the TrainJob with reason DeadlineExceeded and
  deletes its JobSet.

With ``serve_status`` (Trainer v2.2's ``TrainJobStatus`` feature gate) the controller also serves
the status endpoint (tests/kube/trainer_status_server.py) and the JobSets of TrainJobs created
afterwards give the trainer container its variables, token and CA certificate.

What a node cannot share with its neighbours is mapped as for PyTorchJobs: the JobSet's DNS names
resolve to this machine, and the rendezvous port 29500 becomes a free local port per job.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests import factories
from tests.kube.kubeflow_trainer import JOBSET_API, TRAINER_API, owned_by_train_job
from tests.kube.loopback import free_port
from tests.kube.node import COMPLETION_INDEX_FIELD, POD_IP, JobRun
from tests.kube.server import ApiStatusError

if TYPE_CHECKING:
    from tests.kube.node import LocalNode
    from tests.kube.trainer_status_server import TrainerStatusServer

NODE = "node"
TRAINER_PORT = 29500


def set_condition(conditions: list[dict[str, Any]], kind: str, true: bool, reason: str, message: str) -> None:
    """Set a metav1.Condition in place; its lastTransitionTime moves only when its status changes."""
    status = "True" if true else "False"
    previous = next((c for c in conditions if c["type"] == kind), None)
    if previous is not None and previous["status"] == status:
        previous.update(reason=reason, message=message)
        return
    if previous is not None:
        conditions.remove(previous)
    conditions.append(
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": factories.timestamp(),
        }
    )


def _is_true(conditions: list[dict[str, Any]], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def jobset_for(
    train_job: Mapping[str, Any], runtime: Mapping[str, Any], status_server: TrainerStatusServer | None = None
) -> dict[str, Any]:
    """The JobSet Trainer v2's controller makes for ``train_job`` from ``runtime`` (with the status
    endpoint's variables and volume when ``status_server`` is served)."""
    name = train_job["metadata"]["name"]
    spec = copy.deepcopy(runtime["spec"]["template"]["spec"])
    trainer = train_job["spec"].get("trainer") or {}
    nodes = int(trainer.get("numNodes") or runtime["spec"].get("mlPolicy", {}).get("numNodes") or 1)
    procs = str(trainer.get("numProcPerNode") or "auto")
    metadata = copy.deepcopy(runtime["spec"]["template"].get("metadata") or {})
    for replicated in spec["replicatedJobs"]:
        job_spec = replicated["template"]["spec"]
        pod_spec = job_spec["template"]["spec"]
        if replicated["name"] == NODE:
            job_spec.update(parallelism=nodes, completions=nodes, completionMode="Indexed")
            container = next(c for c in pod_spec["containers"] if c["name"] == NODE)
            for key in ("image", "command", "args"):
                if key in trainer:
                    container[key] = list(trainer[key]) if isinstance(trainer[key], list) else trainer[key]
            if "resourcesPerNode" in trainer:
                container["resources"] = copy.deepcopy(trainer["resourcesPerNode"])
            torch_env: list[dict[str, Any]] = [
                {"name": "PET_NNODES", "value": str(nodes)},
                {"name": "PET_NPROC_PER_NODE", "value": procs},
                {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX_FIELD}}},
                {"name": "PET_MASTER_ADDR", "value": f"{name}-{NODE}-0-0.{name}"},
                {"name": "PET_MASTER_PORT", "value": str(TRAINER_PORT)},
            ]
            container["env"] = _upsert(container.get("env") or [], [*(trainer.get("env") or []), *torch_env])
            container["ports"] = [*container.get("ports", []), {"containerPort": TRAINER_PORT, "protocol": "TCP"}]
            if status_server is not None:
                status_server.inject(train_job, pod_spec, container)
        for patch in train_job["spec"].get("runtimePatches") or []:
            template_patch = (patch.get("trainingRuntimeSpec") or {}).get("template") or {}
            _merge_metadata(metadata, template_patch.get("metadata"))
            for job_patch in (template_patch.get("spec") or {}).get("replicatedJobs") or []:
                if job_patch["name"] == replicated["name"]:
                    _apply_job_patch(replicated["template"], job_patch.get("template") or {})
    spec["suspend"] = bool(train_job["spec"].get("suspend"))
    metadata["labels"] = {**(metadata.get("labels") or {}), "trainer.kubeflow.org/trainjob-name": name}
    return {
        "apiVersion": JOBSET_API,
        "kind": "JobSet",
        "metadata": {
            **metadata,
            "name": name,
            "namespace": train_job["metadata"]["namespace"],
            "ownerReferences": owned_by_train_job(train_job),
        },
        "spec": spec,
    }


def _upsert(current: list[dict[str, Any]], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A list of named items with ``items`` put in by name (replacing those of the same name)."""
    result = [item for item in current if item["name"] not in {new["name"] for new in items}]
    return result + copy.deepcopy(items)


def _merge_metadata(target: dict[str, Any], patch: dict[str, Any] | None) -> None:
    for key in ("labels", "annotations"):
        if (patch or {}).get(key):
            target[key] = {**(target.get(key) or {}), **patch[key]}  # type: ignore[index]


def _apply_job_patch(job_template: dict[str, Any], patch: dict[str, Any]) -> None:
    _merge_metadata(job_template.setdefault("metadata", {}), patch.get("metadata"))
    pod_patch = (patch.get("spec") or {}).get("template") or {}
    pod_template = job_template["spec"]["template"]
    _merge_metadata(pod_template.setdefault("metadata", {}), pod_patch.get("metadata"))
    spec_patch = pod_patch.get("spec") or {}
    pod_spec = pod_template["spec"]
    for key in ("serviceAccountName", "affinity", "securityContext"):
        if key in spec_patch:
            pod_spec[key] = copy.deepcopy(spec_patch[key])
    if "nodeSelector" in spec_patch:
        pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **spec_patch["nodeSelector"]}
    for key in ("volumes", "tolerations", "imagePullSecrets", "schedulingGates"):
        if key in spec_patch:
            pod_spec[key] = [*(pod_spec.get(key) or []), *copy.deepcopy(spec_patch[key])]
    for container_patch in spec_patch.get("containers") or []:
        container = next(c for c in pod_spec["containers"] if c["name"] == container_patch["name"])
        if "env" in container_patch:
            container["env"] = _upsert(container.get("env") or [], container_patch["env"])
        if "volumeMounts" in container_patch:
            container["volumeMounts"] = [*(container.get("volumeMounts") or []), *container_patch["volumeMounts"]]
        if "securityContext" in container_patch:
            container["securityContext"] = copy.deepcopy(container_patch["securityContext"])


class TrainerController:
    """Plays Trainer v2's and JobSet's controllers for the TrainJobs of ``node``'s emulator."""

    def __init__(self, node: LocalNode) -> None:
        self.node = node
        self.api = node.api
        self.status_server: TrainerStatusServer | None = None

    def serve_status(self) -> TrainerStatusServer:
        """Serve the status endpoint (feature gate TrainJobStatus on) for the TrainJobs started from now on."""
        if self.status_server is None:
            from tests.kube.trainer_status_server import TrainerStatusServer

            self.status_server = TrainerStatusServer(self.api, self.node.tokens)
        return self.status_server

    def close(self) -> None:
        if self.status_server is not None:
            self.status_server.close()
            self.status_server = None

    def tick(self) -> None:
        train_jobs = {
            (j["metadata"]["namespace"], j["metadata"]["name"]): j for j in self.api.list(TRAINER_API, "TrainJob")
        }
        for key, run in list(self.node.runs.items()):
            if run.kind != "TrainJob":
                continue
            found = train_jobs.get(key)
            if found is None or found["metadata"]["uid"] != run.uid or found["metadata"].get("deletionTimestamp"):
                self.node._kill(run)
                del self.node.runs[key]
        for key, train_job in train_jobs.items():
            if train_job["metadata"].get("deletionTimestamp"):
                continue
            if key not in self.node.runs:
                self.node.runs[key] = JobRun(*key, train_job["metadata"]["uid"], kind="TrainJob")
            self._reconcile(train_job, self.node.runs[key])

    def _reconcile(self, train_job: dict[str, Any], run: JobRun) -> None:
        if run.finished:
            return
        namespace, name = run.namespace, run.name
        jobset = self.api.find(JOBSET_API, "JobSet", name, namespace)
        suspend = bool(train_job["spec"].get("suspend"))
        if jobset is None or suspend or jobset["spec"].get("suspend"):
            # Trainer v2 applies the whole JobSet while the TrainJob or the JobSet is suspended
            # (JobSet lets a suspended JobSet's pod templates change): what a runtime patch
            # changed meanwhile (Kueue's, on admission) reaches the pods that start next.
            jobset = self._apply_jobset(train_job, jobset, suspend=suspend)
            if jobset is None:
                return  # Trainer v2 retries until the runtime exists
        if suspend:
            if run.pods:
                self._terminate(jobset, run)
            if not run.suspended:
                run.suspended = True
                run.started_at = None
                self._write(train_job, jobset, run)
            return
        if not run.pods:
            self._start(jobset, run)
            self._write(train_job, jobset, run)
            run.suspended = False
            return
        self._watch(train_job, jobset, run)

    def runtime(self, train_job: Mapping[str, Any]) -> dict[str, Any] | None:
        """The TrainingRuntime or ClusterTrainingRuntime the TrainJob names, None when absent."""
        ref = train_job["spec"]["runtimeRef"]
        if ref.get("kind", "ClusterTrainingRuntime") == "ClusterTrainingRuntime":
            return self.api.find(TRAINER_API, "ClusterTrainingRuntime", ref["name"], None)
        return self.api.find(TRAINER_API, "TrainingRuntime", ref["name"], train_job["metadata"]["namespace"])

    def _apply_jobset(
        self, train_job: dict[str, Any], jobset: dict[str, Any] | None, *, suspend: bool
    ) -> dict[str, Any] | None:
        """The JobSet of ``train_job`` from its runtime: created (after the ConfigMap of the status
        endpoint's CA when the endpoint is served), or patched to what the TrainJob and its runtime
        now make; None while the runtime is missing."""
        runtime = self.runtime(train_job)
        if runtime is None:
            return None
        wanted = jobset_for(train_job, runtime, self.status_server)
        if jobset is None:
            if self.status_server is not None:
                try:
                    self.api.create(self.status_server.tls_config_map(train_job))
                except ApiStatusError as error:
                    if error.status != 409:  # 409: made by an earlier reconcile
                        raise
            created: dict[str, Any] = self.api.create(wanted)
            return created
        patch: dict[str, Any] = {}
        if bool(jobset["spec"].get("suspend")) != suspend:
            patch["suspend"] = suspend
        if jobset["spec"]["replicatedJobs"] != wanted["spec"]["replicatedJobs"]:
            patch["replicatedJobs"] = wanted["spec"]["replicatedJobs"]
        if not patch:
            return jobset
        name, namespace = train_job["metadata"]["name"], train_job["metadata"]["namespace"]
        patched: dict[str, Any] = self.api.patch(JOBSET_API, "JobSet", name, {"spec": patch}, namespace)
        return patched

    # Pods --------------------------------------------------------------------------------------

    def _start(self, jobset: dict[str, Any], run: JobRun) -> None:
        replicated = next(r for r in jobset["spec"]["replicatedJobs"] if r["name"] == NODE)
        template = replicated["template"]["spec"]["template"]
        nodes = int(replicated["template"]["spec"].get("completions") or 1)
        # The JobSet's headless service names resolve to this machine; the rendezvous port is one of its own.
        mapped = {"PET_MASTER_ADDR": POD_IP, "PET_MASTER_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
        pod_template = copy.deepcopy(template)
        container = next(c for c in pod_template["spec"]["containers"] if c["name"] == NODE)
        container["env"] = [e for e in container.get("env", []) if e["name"] not in mapped]
        run.pods = [self.node._start_pod(jobset, NODE, index, pod_template, mapped) for index in range(nodes)]
        run.started_at = time.monotonic()

    def _terminate(self, jobset: dict[str, Any], run: JobRun) -> None:
        """The Jobs deleted: every pod gets SIGTERM and its grace period."""
        replicated = next(r for r in jobset["spec"]["replicatedJobs"] if r["name"] == NODE)
        pod_spec = replicated["template"]["spec"]["template"]["spec"]
        grace = float(pod_spec.get("terminationGracePeriodSeconds", 30))
        self.node._terminate_pods(run, grace)

    def _watch(self, train_job: dict[str, Any], jobset: dict[str, Any], run: JobRun) -> None:
        for pod in run.pods:
            self.node._kill_past_grace(pod)
            if pod.exit_code is None and pod.process.poll() is not None:
                self.node._record_exit(run.namespace, pod)
        deadline = train_job["spec"].get("activeDeadlineSeconds")
        if deadline and run.started_at is not None and time.monotonic() - run.started_at > float(deadline):
            self.node._kill(run)
            run.finished = True
            with contextlib.suppress(ApiStatusError):
                self.api.delete(JOBSET_API, "JobSet", run.name, run.namespace)
            self._write(train_job, None, run, failed=("DeadlineExceeded", "TrainJob exceeded its active deadline"))
            return
        failed = [p for p in run.pods if p.exit_code not in (None, 0)]
        if failed:
            self.node._kill(run)
            code = int(failed[0].exit_code or 0)
            reason = "PodFailurePolicy" if self._fails_job(jobset, code) else "BackoffLimitExceeded"
            action = self._failure_action(jobset, reason)
            policy = jobset["spec"].get("failurePolicy") or {}
            if action == "RestartJobSet" and run.restarts < int(policy.get("maxRestarts") or 0):
                run.restarts += 1
                self._start(jobset, run)
                self._write(train_job, jobset, run)
                return
            run.finished = True
            self._write(train_job, jobset, run, failed=("FailedJobs", f"jobset failed due to {reason}"))
            return
        if all(p.exit_code == 0 for p in run.pods):
            run.finished = True
            self._write(train_job, jobset, run, completed=True)
            return
        if not run.suspended:
            self._write(train_job, jobset, run)

    @staticmethod
    def _fails_job(jobset: dict[str, Any], code: int) -> bool:
        """Whether the Job's podFailurePolicy fails it for a container exit ``code``."""
        replicated = next(r for r in jobset["spec"]["replicatedJobs"] if r["name"] == NODE)
        for rule in (replicated["template"]["spec"].get("podFailurePolicy") or {}).get("rules") or []:
            codes = rule.get("onExitCodes") or {}
            inside = code in (codes.get("values") or [])
            if codes and (inside if codes.get("operator") == "In" else not inside):
                return bool(rule["action"] == "FailJob")
        return False

    @staticmethod
    def _failure_action(jobset: dict[str, Any], reason: str) -> str:
        """JobSet's failure policy: the first rule matching the Job's failure reason, else a restart."""
        for rule in (jobset["spec"].get("failurePolicy") or {}).get("rules") or []:
            reasons = rule.get("onJobFailureReasons") or []
            if not reasons or reason in reasons:
                return str(rule["action"])
        return "RestartJobSet"

    # Status ------------------------------------------------------------------------------------

    def _write(
        self,
        train_job: dict[str, Any],
        jobset: dict[str, Any] | None,
        run: JobRun,
        *,
        completed: bool = False,
        failed: tuple[str, str] | None = None,
    ) -> None:
        """Write the JobSet's status, then the TrainJob's from it (as the two controllers do)."""
        active = sum(1 for p in run.pods if p.exit_code is None and p.process.poll() is None)
        running = active > 0 and active == len(run.pods)
        counts = {
            "name": NODE,
            "ready": int(running and not run.suspended),
            "succeeded": int(completed),
            "failed": int(failed is not None),
            "active": int(active > 0),
            "suspended": int(bool(train_job["spec"].get("suspend"))),
        }
        suspended = bool(train_job["spec"].get("suspend"))
        current = self.api.find(TRAINER_API, "TrainJob", run.name, run.namespace)
        if current is None:
            return
        conditions = list((current.get("status") or {}).get("conditions") or [])
        if suspended:
            set_condition(conditions, "Suspended", True, "Suspended", "TrainJob is suspended")
        elif _is_true(conditions, "Suspended"):
            set_condition(conditions, "Suspended", False, "Resumed", "TrainJob is resumed")
        if completed:
            set_condition(conditions, "Complete", True, "AllJobsCompleted", "jobset completed successfully")
        if failed is not None:
            set_condition(conditions, "Failed", True, *failed)
        if jobset is not None:
            jobset_conditions = list((jobset.get("status") or {}).get("conditions") or [])
            if suspended:
                set_condition(jobset_conditions, "Suspended", True, "SuspendedJobs", "jobset is suspended")
            elif _is_true(jobset_conditions, "Suspended"):
                set_condition(jobset_conditions, "Suspended", False, "ResumeJobs", "jobset is resumed")
            if completed:
                set_condition(jobset_conditions, "Completed", True, "AllJobsCompleted", "jobset completed successfully")
            if failed is not None:
                set_condition(jobset_conditions, "Failed", True, *failed)
            with contextlib.suppress(ApiStatusError):
                self.api.patch_status(
                    JOBSET_API,
                    "JobSet",
                    run.name,
                    {"conditions": jobset_conditions, "restarts": run.restarts, "replicatedJobsStatus": [counts]},
                    run.namespace,
                )
        status = {"conditions": conditions, "jobsStatus": [counts]}
        if status != {k: (current.get("status") or {}).get(k) for k in status}:
            self.api.patch_status(TRAINER_API, "TrainJob", run.name, status, run.namespace)
