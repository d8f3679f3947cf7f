"""``t1`` verbs for jobs on a cluster: create, list (``-w`` to follow, ``-A`` for every namespace),
get, stop, resume, cancel, delete, events, checkpoints, download. Each is a thin layer over
:class:`tensorone.client.TensorOneClient`; the verbs that show a job or a list take ``-o
json|yaml|wide`` (``tensorone.cli.output``)."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tensorone.cli import connection
from tensorone.cli.connection import add_verb
from tensorone.cli.output import (
    Results,
    add_output_argument,
    add_result_output_argument,
    add_wait_argument,
    duration,
    json_time,
    money,
    number,
    percent,
    print_deletion,
    print_document,
    print_results,
    print_table,
    sparkline,
    table,
    when,
)
from tensorone.errors import ConfigurationError

if TYPE_CHECKING:
    from tensorone.client import Job


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verb = functools.partial(add_verb, subparsers)

    create = verb("create", "Create TrainingJobs and Datasets from a manifest file.", _create)
    create.add_argument("-f", "--filename", required=True, type=Path, help="YAML manifest (several documents allowed)")
    add_result_output_argument(create)

    listing = verb("list", "List training jobs, newest first.", _list)
    listing.add_argument("--status", help="only jobs in this phase, in lower case (pending, running, completed, ...)")
    listing.add_argument("--model-type", help="llm, vision, multimodal or custom")
    listing.add_argument("--tag", help="only jobs with this tag")
    listing.add_argument("--limit", type=int, default=50, help="1 to 100 (default 50)")
    listing.add_argument("--offset", type=int, default=0, help="jobs to skip")
    listing.add_argument("--sort", default="created_at", help="created_at, updated_at or name")
    listing.add_argument("--order", default="desc", help="asc or desc")
    listing.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="keep following: a table that updates on a terminal, else a row per change; every matching job, "
        "not a page; until interrupted",
    )
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="jobs of every namespace")
    add_output_argument(listing, "table")

    get = verb("get", "Show a job's details: progress, metrics, cost, checkpoints.", _get)
    get.add_argument("job")
    add_output_argument(get, "text")

    stop = verb("stop", "Stop a job; the trainer saves a checkpoint first.", _stop)
    stop.add_argument("job")
    stop.add_argument("--reason", help="why, kept as an annotation")
    add_result_output_argument(stop)

    resume = verb("resume", "Resume a stopped job from the latest or a named checkpoint.", _resume)
    resume.add_argument("job")
    resume.add_argument("--checkpoint", help="checkpoint id (default: latest)")
    add_result_output_argument(resume)

    cancel = verb("cancel", "Cancel a job for good; checkpoints are kept.", _cancel)
    cancel.add_argument("job")
    add_result_output_argument(cancel)

    delete = verb("delete", "Delete a job and what the operator made for it.", _delete)
    delete.add_argument("job")
    delete.add_argument("--force", action="store_true", help="also remove the finalizer (operator gone)")
    add_wait_argument(delete, "the job")
    add_result_output_argument(delete, documents=False)

    events = verb(
        "events",
        "Show a job's events, oldest first: its Kubernetes Events and a metric event per optimizer step "
        "(loss, learning rate, gradient norm, throughput) and per evaluation.",
        _events,
    )
    events.add_argument("job")
    events.add_argument(
        "--no-metrics", action="store_true", help="Kubernetes Events only (needs no read access to ConfigMaps)"
    )
    add_output_argument(events, "table")

    checkpoints = verb("checkpoints", "List a job's checkpoints, newest first.", _checkpoints)
    checkpoints.add_argument("job")
    add_output_argument(checkpoints, "table")

    download = verb(
        "download",
        "Download a job's final model, or one of its checkpoints, every file checked against its SHA-256: from "
        "its export (spec.output) with this machine's AWS credentials, or else from its checkpoint claim through a "
        "short-lived pod (needs create, get, delete on pods and create on pods/exec in the job's namespace).",
        _download,
    )
    download.add_argument("job")
    download.add_argument("--checkpoint", metavar="ID", help="a checkpoint id of t1 checkpoints JOB (default: final)")
    download.add_argument("-o", "--output-dir", required=True, type=Path, metavar="DIR", help="new or empty folder")
    download.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="the store's address from this machine, when spec.output.endpointUrl is the cluster's own",
    )
    download.add_argument(
        "--image",
        metavar="IMAGE",
        help="image of the pod that copies from the claim (needs tar and sleep; default: the job's trainer image)",
    )
    download.add_argument(
        "--start-timeout",
        type=float,
        metavar="SECONDS",
        help="how long the pod that copies from the claim may take to start (default 300: an image pull)",
    )


def _create(args: argparse.Namespace) -> int:
    if not args.filename.exists():
        raise ConfigurationError(f"no such file: {args.filename}", field="--filename")
    from tensorone.cli.manifests import document_namespace, load_manifests

    documents = load_manifests(args.filename.read_text())
    # Every document is checked before the first is created: a refused one leaves nothing behind.
    targets = []
    for document in documents:
        if document.get("kind") not in ("TrainingJob", "Dataset"):
            raise ConfigurationError(f"must be TrainingJob or Dataset, got {document.get('kind')!r}", field="kind")
        targets.append((document, document_namespace(document, args.namespace)))
    client = connection.client(args)
    results = Results(args.output)
    for document, namespace in targets:
        name = document.get("metadata", {}).get("name")
        if document["kind"] == "TrainingJob":
            metadata = {**document.get("metadata", {}), **({"namespace": namespace} if namespace else {})}
            job = client.training.jobs.apply({**document, "metadata": metadata})
            results.add(f"trainingjob/{job.id}", f"trainingjob/{job.id} created", job.raw)
        else:
            dataset, created = client.datasets.apply(name=name, spec=document.get("spec", {}), namespace=namespace)
            results.add(f"dataset/{name}", f"dataset/{name} {'created' if created else 'unchanged'}", dataset.to_wire())
    results.done()
    return 0


def _list(args: argparse.Namespace) -> int:
    header, row = _job_columns(wide=args.output == "wide", namespaces=args.all_namespaces)
    filters = {"status": args.status, "model_type": args.model_type, "tag": args.tag}
    order = {"sort": args.sort, "order": args.order}
    if args.watch:
        if args.output in ("json", "yaml"):
            raise ConfigurationError(
                "t1 list -w prints a table (-o wide for more columns); for documents, t1 list -o json now and "
                "again, or follow the jobs with the SDK (client.training.jobs.watch_list)",
                field="--output",
            )
        from tensorone.cli.watch import follow_list

        jobs = connection.kube_jobs(args, "t1 list -w")
        return follow_list(jobs.watch_list(**filters, **order, all_namespaces=args.all_namespaces), header, row)
    jobs = connection.kube_jobs(args, "t1 list -A") if args.all_namespaces else connection.client(args).training.jobs
    result = jobs.list(**filters, **order, limit=args.limit, offset=args.offset, all_namespaces=args.all_namespaces)
    if args.output in ("json", "yaml"):
        pagination = result.pagination
        page = {"total": pagination.total, "limit": pagination.limit, "offset": pagination.offset}
        document = {
            "jobs": [_summary(job) for job in result.jobs],
            "pagination": {**page, "hasMore": pagination.has_more},
        }
        print_document(document, args.output)
        return 0
    print_table([list(header), *(row(job) for job in result.jobs)])
    if result.pagination.has_more:
        print(f"... {result.pagination.total} jobs in all; next page: --offset {args.offset + args.limit}")
    return 0


def _job_columns(*, wide: bool, namespaces: bool) -> tuple[list[str], Callable[[Job], list[str]]]:
    """The job table's header and the row of a job: NAMESPACE first for every namespace's jobs,
    more columns when wide."""
    header = ["NAME", "STATUS", "MODEL", "GPU", "WORKERS", "PROGRESS", "LOSS", "CREATED"]
    if wide:
        header += ["DATASET", "PRIORITY", "STEP", "EVAL LOSS", "THROUGHPUT", "COST", "ETA"]

    def row(job: Job) -> list[str]:
        cells = [
            job.id,
            job.status,
            job.model_type,
            job.spec.gpu_type or "cpu",
            str(job.spec.max_workers),
            percent(job.progress.percentage),
            number(job.metrics.current_loss),
            when(job.created_at),
        ]
        if wide:
            p = job.progress
            cells += [
                job.dataset_id,
                job.spec.priority,
                f"{p.current_step or 0}/{p.total_steps or '?'}",
                number(job.metrics.eval_loss),
                job.metrics.throughput or "-",
                money(job.resource_usage.cost),
                when(job.estimated_completion),
            ]
        return [job.namespace, *cells] if namespaces else cells

    return (["NAMESPACE", *header] if namespaces else header), row


def _summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "namespace": job.namespace,
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
    if args.output in ("json", "yaml"):
        print_document(job.raw, args.output)
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
    if args.output == "wide":
        lines += _wide_details(job)
    print("\n".join(lines))
    if job.checkpoints:
        print("Checkpoints:")
        for c in job.checkpoints:
            line = f"  {c.id:<24} epoch {c.epoch}  step {c.step}  loss {number(c.loss)}  {c.size or ''}"
            if args.output == "wide":
                line = f"{line.rstrip()}  {c.reason or '-'}  {when(c.created_at)}"
            print(line)
    return 0


def _wide_details(job: Job) -> list[str]:
    """What ``t1 get -o wide`` adds: learning rate, usage, the loss curve and the conditions."""
    usage, m = job.resource_usage, job.metrics
    lines = [
        f"Learning rate: {number(m.learning_rate)}   Best eval loss: {number(m.best_eval_loss)}",
        f"Usage:      running {duration(usage.running_seconds)}, {number(usage.gpu_hours)} GPU-hours, "
        f"efficiency {number(usage.efficiency)}",
        f"Completed:  {when(job.completed_at)}   Updated: {when(job.updated_at)}",
    ]
    if job.loss_history:
        curve = [sample.loss for sample in job.loss_history]
        lines.append(
            f"Loss curve: {sparkline(curve)}  {number(curve[0])} -> {number(curve[-1])}, "
            f"steps {job.loss_history[0].step}-{job.loss_history[-1].step}"
        )
    if job.conditions:
        lines.append("Conditions:")
        rows = [["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"]]
        rows += [
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                str(c.get("lastTransitionTime", "-")),
                str(c.get("message", "")),
            ]
            for c in job.conditions
        ]
        lines += ["  " + line for line in table(rows).splitlines()]
    return lines


def _stop(args: argparse.Namespace) -> int:
    job = connection.client(args).training.jobs.stop(args.job, reason=args.reason)
    sentence = f"trainingjob/{job.id} stopping (a checkpoint is saved before the pods end)"
    print_results(args.output, [(f"trainingjob/{job.id}", sentence, job.raw)])
    return 0


def _resume(args: argparse.Namespace) -> int:
    job = connection.client(args).training.jobs.resume(args.job, checkpoint_id=args.checkpoint)
    sentence = f"trainingjob/{job.id} resuming from {args.checkpoint or 'the latest checkpoint'}"
    print_results(args.output, [(f"trainingjob/{job.id}", sentence, job.raw)])
    return 0


def _cancel(args: argparse.Namespace) -> int:
    job = connection.client(args).training.jobs.cancel(args.job)
    print_results(
        args.output, [(f"trainingjob/{job.id}", f"trainingjob/{job.id} cancelled (checkpoints kept)", job.raw)]
    )
    return 0


def _delete(args: argparse.Namespace) -> int:
    state = connection.client(args).training.jobs.delete(args.job, force=args.force, wait=args.wait)
    if args.output == "name":
        print(f"trainingjob/{args.job}")
        return 0
    print_deletion(f"trainingjob/{args.job}", state, args.wait, "the operator is cleaning up")
    return 0


def _events(args: argparse.Namespace) -> int:
    events = connection.client(args).training.jobs.list_events(args.job, metrics=not args.no_metrics)
    if args.output in ("json", "yaml"):
        print_document({"events": [event.to_wire() for event in events]}, args.output)
        return 0
    wide = args.output == "wide"
    rows = [["LAST SEEN", *(["FIRST SEEN"] if wide else []), "TYPE", "REASON", "COUNT", "MESSAGE"]]
    for event in events:
        first = [when(event.first_seen)] if wide else []
        rows.append([when(event.last_seen), *first, event.type, event.reason, str(event.count), event.message])
    print_table(rows)
    return 0


def _checkpoints(args: argparse.Namespace) -> int:
    checkpoints = connection.client(args).training.jobs.list_checkpoints(args.job)
    if args.output in ("json", "yaml"):
        print_document({"checkpoints": [c.to_wire() for c in checkpoints]}, args.output)
        return 0
    wide = args.output == "wide"
    rows = [["ID", "TYPE", "EPOCH", "STEP", "LOSS", "SIZE", "CREATED", *(["REASON"] if wide else [])]]
    for c in checkpoints:
        cells = [c.id, c.type or "-", str(c.epoch or 0), str(c.step or 0), number(c.loss), c.size or "-"]
        cells.append(when(c.created_at))
        rows.append(cells + ([c.reason or "-"] if wide else []))
    print_table(rows)
    return 0


def _download(args: argparse.Namespace) -> int:
    done = connection.client(args).download(
        args.job,
        args.output_dir,
        checkpoint=args.checkpoint,
        endpoint_url=args.endpoint_url,
        image=args.image,
        start_timeout=args.start_timeout,
    )
    print(f"{done.files} files, {done.size_bytes} bytes, from {done.source} to {done.directory} (SHA-256 checked)")
    return 0
