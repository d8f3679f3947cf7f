"""MLflow: the job is one run of an experiment on a tracking server.

The client is mlflow-skinny's ``MlflowClient`` over the server's REST API; credentials come from
the environment (``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``, or
``MLFLOW_TRACKING_TOKEN``), which the operator fills from the job's Secret. Metrics are gathered
into one request every ``SEND_SECONDS`` (a server takes one request per step badly) and sent
asynchronously (MLflow's own queue, ``synchronous=False``), so a step never waits for the server;
the sends are awaited at each checkpoint and at the end, so a checkpoint's steps are on the server
when it is saved. Checkpoints (with ``logCheckpoints``) are uploaded as artifacts
``checkpoints/<id>/model/...`` and ``checkpoints/<id>/manifest.json``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tensorone.api.report import CheckpointReport, TrainerState
from tensorone.api.v1alpha1.trainingjob import MlflowTracking
from trainer.tracking import Logged, RunContext

if TYPE_CHECKING:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from mlflow.utils.async_logging.run_operations import RunOperations

log = logging.getLogger("trainer")

# How the run ends in MLflow for each final state of the trainer. A stopped job is KILLED until it
# is resumed, when the run is RUNNING again.
RUN_STATUS = {
    TrainerState.completed: "FINISHED",
    TrainerState.stopped: "KILLED",
    TrainerState.failed: "FAILED",
    TrainerState.diverged: "FAILED",
}
# Metrics gathered into one request: at least this often, and at most this many (the REST API's
# limit for metrics in one log-batch request is 1000).
SEND_SECONDS = 2.0
MAX_BATCH_METRICS = 900
# Sends in flight are awaited when this many have piled up (about 8 minutes of sends), so the list
# stays short in a long run without checkpoints.
MAX_PENDING = 256
MAX_PARAMS_PER_BATCH = 100  # the REST API's limit for params in one log-batch request


class MlflowTracker:
    """One MLflow run, open."""

    name = "mlflow"

    def __init__(self, client: MlflowClient, run_id: str, logged: Logged, *, log_checkpoints: bool) -> None:
        self.client = client
        self.run_id = run_id
        self.logged = logged
        self.log_checkpoints = log_checkpoints
        self._batch: list[Metric] = []
        self._sent = time.monotonic()
        self._pending: list[RunOperations] = []

    @classmethod
    def open(cls, settings: MlflowTracking, context: RunContext) -> MlflowTracker:
        """The run of tracking.json when it still exists on the server (set RUNNING again), else a
        new run of the experiment, with the hyperparameters as its params."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=settings.tracking_uri)
        run_id = _existing_run(client, context.saved)
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            logged = Logged(step=_last_step(client, run_id, "train/loss"), eval=_last_step(client, run_id, "eval/loss"))
            return cls(client, run_id, logged, log_checkpoints=settings.log_checkpoints)

        experiment_id = _experiment_id(client, settings.experiment or context.job.namespace)
        job = context.job
        tags = {"tensorone.job": job.name, "tensorone.namespace": job.namespace}
        if job.uid:
            tags["tensorone.uid"] = job.uid
        run = client.create_run(experiment_id, run_name=context.run_name, tags=tags)
        run_id = run.info.run_id
        context.save({"runId": run_id, "experimentId": experiment_id, "trackingUri": settings.tracking_uri})
        _log_params(client, run_id, context.hyperparameters)
        return cls(client, run_id, Logged(), log_checkpoints=settings.log_checkpoints)

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self._send(step, metrics)

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        self._send(step, metrics)

    def log_checkpoint(self, checkpoint: CheckpointReport, folder: Path) -> None:
        self._await_sends()
        if not self.log_checkpoints:
            return
        started = time.monotonic()
        where = f"checkpoints/{checkpoint.id}"
        self.client.log_artifacts(self.run_id, str(folder / "model"), artifact_path=f"{where}/model")
        self.client.log_artifact(self.run_id, str(folder / "manifest.json"), artifact_path=where)
        log.info("mlflow: checkpoint %s uploaded in %.1f s", checkpoint.id, time.monotonic() - started)

    def finish(self, state: TrainerState) -> None:
        self._await_sends()
        self.client.set_terminated(self.run_id, status=RUN_STATUS.get(state, "FAILED"))

    def _send(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._batch.extend(Metric(key, value, stamp, step) for key, value in metrics.items())
        if len(self._batch) >= MAX_BATCH_METRICS or time.monotonic() - self._sent >= SEND_SECONDS:
            self._send_batch()
        if len(self._pending) >= MAX_PENDING:
            self._await_sends()

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        self._sent = time.monotonic()
        if batch:
            operations = self.client.log_batch(self.run_id, metrics=batch, synchronous=False)
            if operations is not None:
                self._pending.append(operations)

    def _await_sends(self) -> None:
        """Send what is gathered and wait for every send; a failed one raises (MlflowException)."""
        self._send_batch()
        pending, self._pending = self._pending, []
        for operations in pending:
            operations.wait()


def _existing_run(client: MlflowClient, saved: dict[str, Any] | None) -> str | None:
    """The saved run's id when the server still has it (not deleted), else None."""
    from mlflow.exceptions import MlflowException

    run_id = (saved or {}).get("runId")
    if not isinstance(run_id, str):
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        log.warning("mlflow: run %s of tracking.json no longer exists; starting a new run", run_id)
        return None
    if run.info.lifecycle_stage == "deleted":
        log.warning("mlflow: run %s of tracking.json was deleted; starting a new run", run_id)
        return None
    return run_id


def _experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, created when missing (another job may create it at the same time)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException as error:
        experiment = client.get_experiment_by_name(name)
        if error.error_code != "RESOURCE_ALREADY_EXISTS" or experiment is None:
            raise
        return str(experiment.experiment_id)


def _last_step(client: MlflowClient, run_id: str, key: str) -> int:
    """The last step of a metric the run holds, 0 when none."""
    return max((metric.step for metric in client.get_metric_history(run_id, key)), default=0)


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, str | int | float | bool]) -> None:
    from mlflow.entities import Param

    items = [Param(key, str(value)) for key, value in params.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])
