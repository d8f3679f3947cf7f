"""``t1 train MANIFEST``: run a TrainingJob on this machine, no cluster needed.

The manifest file holds the TrainingJob and its Dataset (a multi-document YAML). Both are
validated as the API server would, turned into the same resolved job the operator mounts in the
pods, and trained in this process with a progress bar. Paths on a laptop:

- a pvc source's ``path`` is resolved against the manifest's folder (``/data/x.jsonl`` is
  ``<manifest folder>/data/x.jsonl``): the folder plays the claim;
- a relative ``config.baseModel`` naming a folder next to the manifest is that folder; anything
  else is a hub id;
- checkpoints, the metrics log and the final output go to ``runs/<job name>/`` (``--output``).

Running the same command again resumes from the latest checkpoint (``--resume-from none`` starts
over).
"""

# The trainer provides this verb to ``t1`` through the ``tensorone.cli`` entry-point group
# (pyproject.toml). ``t1`` imports this module for every verb, so it imports nothing heavier than
# the API types: torch and the trainer come when a training starts.

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from tensorone.api.resolved import METRICS_LOG, ResolvedJob, resolve_job
from tensorone.api.v1alpha1 import Dataset, TrainingJob
from tensorone.errors import ConfigurationError, DatasetNotFound, MissingExtra
from trainer.signals import StopSignal

# Libraries of the trainer extra that a local training cannot start without.
TRAINER_LIBRARIES = ("torch", "transformers")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train`` verb."""
    parser = subparsers.add_parser(
        "train",
        help="Train a TrainingJob manifest locally (CPU or local GPU), with checkpoints and a metrics log.",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="YAML with the TrainingJob and its Dataset")
    parser.add_argument("--output", type=Path, help="folder for checkpoints and output (default runs/<job name>)")
    parser.add_argument(
        "--resume-from",
        metavar="ID",
        help="checkpoint id, latest or none (default: the manifest's resumeFrom, else latest)",
    )
    parser.add_argument(
        "--report-port",
        type=int,
        default=0,
        metavar="PORT",
        help="port of /progress and /metrics (default: any free port, printed at start)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not serve /progress and /metrics")
    parser.add_argument("--merge", action="store_true", help="also write the model with the LoRA adapter merged in")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is available")
    parser.add_argument("--cache-dir", help="Hugging Face cache folder (default: the hub's own)")
    parser.set_defaults(handler=_train)


def resolve_manifest(
    path: Path,
    *,
    output: Path | None = None,
    resume_from: str | None = None,
    report_port: int = 0,
    use_gpu: bool = False,
    cache_dir: str | None = None,
) -> ResolvedJob:
    """The resolved job of a local manifest file: what the operator would mount in the pods."""
    from tensorone.api.admission import validate
    from tensorone.cli.manifests import load_manifests

    if not path.is_file():
        raise ConfigurationError(f"no such file: {path}", field="MANIFEST")
    objects = load_manifests(path.read_text())
    jobs = [TrainingJob.model_validate(validate(o)) for o in objects if o.get("kind") == "TrainingJob"]
    datasets = [Dataset.model_validate(validate(o)) for o in objects if o.get("kind") == "Dataset"]
    if len(jobs) != 1:
        raise ConfigurationError(f"{path} must hold exactly one TrainingJob, it holds {len(jobs)}", field="MANIFEST")
    job = jobs[0]
    name = job.metadata.name
    if not name:
        raise ConfigurationError("the TrainingJob needs a name", field="metadata.name")
    dataset = next((d for d in datasets if d.metadata.name == job.spec.dataset_id), None)
    if dataset is None:
        names = ", ".join(str(d.metadata.name) for d in datasets) or "none"
        raise DatasetNotFound(
            f"{path} holds no Dataset named {job.spec.dataset_id} (Datasets in the file: {names})",
            field="spec.datasetId",
        )

    folder = path.resolve().parent
    spec = job.spec
    base_model = spec.config.base_model
    if base_model and not Path(base_model).is_absolute() and (folder / base_model).is_dir():
        config = spec.config.model_copy(update={"base_model": str(folder / base_model)})
        spec = spec.model_copy(update={"config": config})
    root = output if output is not None else Path("runs") / name
    return resolve_job(
        spec,
        dataset.spec,
        name=name,
        namespace=job.metadata.namespace or "default",
        dataset_mount_path=str(folder),
        checkpoint_dir=str((root / "checkpoints").resolve()),
        output_dir=str((root / "output").resolve()),
        resume_from=resume_from,
        report_port=report_port,
        use_gpu=use_gpu,
        cache_dir=cache_dir,
    )


def _train(args: argparse.Namespace) -> int:
    # Before torch: a stop while the libraries load is kept, and the run ends cleanly on it.
    stop = StopSignal()
    stop.install()
    try:
        return _train_until_stopped(args, stop)
    finally:
        stop.restore()


def _train_until_stopped(args: argparse.Namespace, stop: StopSignal) -> int:
    for library in TRAINER_LIBRARIES:
        try:
            importlib.import_module(library)
        except ModuleNotFoundError as error:
            raise MissingExtra("trainer", needed_by="t1 train", missing=error.name or library) from error
    import torch

    from trainer.run import RunOptions, run

    resolved = resolve_manifest(
        args.manifest,
        output=args.output,
        resume_from=args.resume_from,
        report_port=args.report_port,
        use_gpu=torch.cuda.is_available() and not args.cpu,
        cache_dir=args.cache_dir,
    )
    root = Path(resolved.checkpoint_dir).parent
    root.mkdir(parents=True, exist_ok=True)
    resolved.write(root / "job.yaml")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    _quiet_libraries()
    print(f"training {resolved.name} on {'GPU' if resolved.use_gpu else 'CPU'}: resolved job in {root / 'job.yaml'}")
    result = run(
        resolved, RunOptions(serve_reports=not args.no_report, progress_bar=True, merge_adapter=args.merge), stop
    )
    _print_summary(result.report.to_wire() if result.report is not None else {}, resolved)
    return result.exit_code


def _quiet_libraries() -> None:
    # Our progress bar is the one that matters; the hub's download and loading bars would interleave.
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


def _print_summary(report: dict[str, Any], resolved: ResolvedJob) -> None:
    if report.get("resumedFrom"):
        print(f"resumed from {report['resumedFrom']}")
    history = report.get("lossHistory") or []
    if history:
        first, last = history[0], history[-1]
        print(f"loss {first['loss']:.4f} (step {first['step']}) -> {last['loss']:.4f} (step {last['step']})")
    if report.get("evalLoss") is not None:
        metrics = "".join(f", {name} {value:.4f}" for name, value in (report.get("evalMetrics") or {}).items())
        print(f"eval loss {report['evalLoss']:.4f}{metrics}")
    checkpoints = ", ".join(c["id"] for c in report.get("checkpoints") or [])
    print(f"state {report.get('state')}: {report.get('message') or ''}")
    print(f"checkpoints ({resolved.checkpoint_dir}): {checkpoints or 'none'}")
    print(f"metrics log: {Path(resolved.checkpoint_dir) / METRICS_LOG}")
