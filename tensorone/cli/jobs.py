"""``t1`` verbs for jobs on a cluster: create, list, get, stop, resume, cancel, delete, events,
checkpoints. Each is a thin layer over :class:`tensorone.client.TensorOneClient`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tensorone.cli import connection
from tensorone.cli.connection import add_connection_arguments
from tensorone.cli.output import json_time, money, number, percent, print_table, when
from tensorone.errors import ConfigurationError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def verb(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        add_connection_arguments(parser)
        parser.set_defaults(handler=handler)
        return parser

    create = verb("create", "Create TrainingJobs and Datasets from a manifest file.", _create)
    create.add_argument("-f", "--filename", required=True, type=Path, help="YAML manifest (several documents allowed)")

    listing = verb("list", "List training jobs, newest first.", _list)
    listing.add_argument("--status", help="only jobs in this phase, in lower case (pending, running, completed, ...)")
    listing.add_argument("--model-type", help="llm, vision, multimodal or custom")
    listing.add_argument("--tag", help="only jobs with this tag")
    listing.add_argument("--limit", type=int, default=50, help="1 to 100 (default 50)")
    listing.add_argument("--offset", type=int, default=0, help="jobs to skip")
    listing.add_argument("--sort", default="created_at", help="created_at, updated_at or name")
    listing.add_argument("--order", default="desc", help="asc or desc")
    listing.add_argument("-o", "--output", choices=["table", "json"], default="table")

    get = verb("get", "Show a job's details: progress, metrics, cost, checkpoints.", _get)
    get.add_argument("job")
    get.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")

    stop = verb("stop", "Stop a job; the trainer saves a checkpoint first.", _stop)
    stop.add_argument("job")
    stop.add_argument("--reason", help="why, kept as an annotation")

    resume = verb("resume", "Resume a stopped job from the latest or a named checkpoint.", _resume)
    resume.add_argument("job")
    resume.add_argument("--checkpoint", help="checkpoint id (default: latest)")

    cancel = verb("cancel", "Cancel a job for good; checkpoints are kept.", _cancel)
    cancel.add_argument("job")

    delete = verb("delete", "Delete a job and what the operator made for it.", _delete)
    delete.add_argument("job")
    delete.add_argument("--force", action="store_true", help="also remove the finalizer (operator gone)")
    delete.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=60.0,
        metavar="SECONDS",
        help="wait until the job is gone (default 60 s when given without a value)",
    )

    events = verb("events", "Show a job's events, oldest first.", _events)
    events.add_argument("job")

    checkpoints = verb("checkpoints", "List a job's checkpoints, newest first.", _checkpoints)
    checkpoints.add_argument("job")


def _create(args: argparse.Namespace) -> int:
    if not args.filename.exists():
        raise ConfigurationError(f"no such file: {args.filename}", field="--filename")
    from tensorone.cli.manifests import load_manifests

    client = connection.client(args)
    for document in load_manifests(args.filename.read_text()):
        kind = document.get("kind")
        name = document.get("metadata", {}).get("name")
        if kind == "TrainingJob":
            job = client.training.jobs.apply(document)
            print(f"trainingjob/{job.id} created")
        elif kind == "Dataset":
            _, created = client.datasets.apply(name=name, spec=document.get("spec", {}))
            print(f"dataset/{name} {'created' if created else 'unchanged'}")
        else:
            raise ConfigurationError(f"must be TrainingJob or Dataset, got {kind!r}", field="kind")
    return 0


def _list(args: argparse.Namespace) -> int:
    result = connection.client(args).training.jobs.list(
        status=args.status,
        model_type=args.model_type,
        tag=args.tag,
        limit=args.limit,
        offset=args.offset,
        sort=args.sort,
        order=args.order,
    )
    if args.output == "json":
        print(
            json.dumps(
                {
                    "jobs": [_summary(job) for job in result.jobs],
                    "pagination": {
                        "total": result.pagination.total,
                        "limit": result.pagination.limit,
                        "offset": result.pagination.offset,
                        "hasMore": result.pagination.has_more,
                    },
                },
                indent=2,
            )
        )
        return 0
    rows = [["NAME", "STATUS", "MODEL", "GPU", "WORKERS", "PROGRESS", "LOSS", "CREATED"]]
    for job in result.jobs:
        rows.append(
            [
                job.id,
                job.status,
                job.model_type,
                job.spec.gpu_type or "cpu",
                str(job.spec.max_workers),
                percent(job.progress.percentage),
                number(job.metrics.current_loss),
                when(job.created_at),
            ]
        )
    print_table(rows)
    if result.pagination.has_more:
        print(f"... {result.pagination.total} jobs in all; next page: --offset {args.offset + args.limit}")
    return 0


def _summary(job: Any) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "modelType": job.model_type,
        "progress": job.progress.to_wire(),
        "metrics": job.metrics.to_wire(),
        "createdAt": json_time(job.created_at),
        "startedAt": json_time(job.started_at),
        "estimatedCompletion": json_time(job.estimated_completion),
    }


def _get(args: argparse.Namespace) -> int:
    job = connection.client(args).training.jobs.get(args.job)
    if args.output == "json":
        print(json.dumps(job.raw, indent=2, default=str))
        return 0
    if args.output == "yaml":
        from tensorone.cli.manifests import dump_manifest

        print(dump_manifest(job.raw), end="")
        return 0
    p, m = job.progress, job.metrics
    lines = [
        f"Job:        {job.id} ({job.namespace})",
        f"Status:     {job.status}" + (f" - {job.message}" if job.message else ""),
        f"Model:      {job.model_type} {job.spec.config.base_model or job.spec.config.architecture or ''}".rstrip(),
        f"Dataset:    {job.dataset_id}",
        f"Resources:  {job.spec.max_workers} x {job.spec.gpu_type or 'cpu'}",
        f"Progress:   epoch {p.current_epoch or 0}/{p.total_epochs or '?'}, step {p.current_step or 0}/"
        f"{p.total_steps or '?'} ({percent(p.percentage)})",
        f"Loss:       current {number(m.current_loss)}, best {number(m.best_loss)}, eval {number(m.eval_loss)}",
        f"Throughput: {m.throughput or '-'}   Memory: {m.memory_usage or '-'}",
        f"Cost:       estimated {money(job.estimated_cost.total)} ({money(job.estimated_cost.hourly)}/h), "
        f"so far {money(job.resource_usage.cost)}",
        f"Started:    {when(job.started_at)}   Estimated completion: {when(job.estimated_completion)}",
    ]
    print("\n".join(lines))
    if job.checkpoints:
        print("Checkpoints:")
        for c in job.checkpoints:
            print(f"  {c.id:<24} epoch {c.epoch}  step {c.step}  loss {number(c.loss)}  {c.size or ''}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    job = connection.client(args).training.jobs.stop(args.job, reason=args.reason)
    print(f"trainingjob/{job.id} stopping (a checkpoint is saved before the pods end)")
    return 0


def _resume(args: argparse.Namespace) -> int:
    job = connection.client(args).training.jobs.resume(args.job, checkpoint_id=args.checkpoint)
    print(f"trainingjob/{job.id} resuming from {args.checkpoint or 'the latest checkpoint'}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    job = connection.client(args).training.jobs.cancel(args.job)
    print(f"trainingjob/{job.id} cancelled (checkpoints kept)")
    return 0


def _delete(args: argparse.Namespace) -> int:
    state = connection.client(args).training.jobs.delete(args.job, force=args.force, wait=args.wait)
    if state == "deleted":
        print(f"trainingjob/{args.job} deleted")
    elif args.wait:
        print(f"trainingjob/{args.job} still terminating after {args.wait:g} s: the operator is cleaning up")
    else:
        print(f"trainingjob/{args.job} terminating: the operator is cleaning up (--wait waits until it is gone)")
    return 0


def _events(args: argparse.Namespace) -> int:
    rows = [["LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"]]
    for event in connection.client(args).training.jobs.list_events(args.job):
        rows.append([when(event.last_seen), event.type, event.reason, str(event.count), event.message])
    print_table(rows)
    return 0


def _checkpoints(args: argparse.Namespace) -> int:
    rows = [["ID", "EPOCH", "STEP", "LOSS", "SIZE", "CREATED"]]
    for c in connection.client(args).training.jobs.list_checkpoints(args.job):
        rows.append([c.id, str(c.epoch or 0), str(c.step or 0), number(c.loss), c.size or "-", when(c.created_at)])
    print_table(rows)
    return 0
