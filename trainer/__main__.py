"""``python -m trainer`` (and ``torchrun ... -m trainer``): train the resolved job.

The job is read from ``--config``, else ``$TENSORONE_JOB_CONFIG``, else
``/etc/tensorone/job/job.yaml`` (where the operator mounts it). The exit code says how it ended
(see trainer.run).
"""

from __future__ import annotations

# Only the standard library and trainer.signals at the top: the handler for SIGTERM is installed
# before anything slow is imported (pydantic and the API types take seconds on a busy node, torch
# more), so a pod stopped while it is still starting ends cleanly rather than by the signal.
import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from trainer.signals import StopSignal


def main(argv: list[str] | None = None) -> int:
    # The loop sees a stop requested now after its first step, and checkpoints.
    stop = StopSignal()
    stop.install()
    from pydantic import ValidationError

    from tensorone.api.exit_codes import ExitCode
    from tensorone.api.report import TrainerState
    from tensorone.api.resolved import DEFAULT_JOB_CONFIG_PATH, JOB_CONFIG_ENV, ResolvedJob
    from tensorone.reporting.client import Reporter

    parser = argparse.ArgumentParser(
        prog="python -m trainer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=None, help="The resolved job (YAML).")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="Also write the base model with the LoRA adapter merged in (output/merged).",
    )
    parser.add_argument("--no-report", action="store_true", help="Do not serve /progress and /metrics.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    path = args.config or Path(os.environ.get(JOB_CONFIG_ENV) or DEFAULT_JOB_CONFIG_PATH)
    try:
        job = ResolvedJob.read(path)
    except (OSError, ValidationError, ValueError) as error:
        message = f"cannot read the job configuration {path}: {error}"
        print(f"trainer: CONFIGURATION_ERROR: {message}", file=sys.stderr)
        # The operator still learns why, from the termination message.
        Reporter(serve=False).finish(TrainerState.failed, reason="ConfigurationError", message=message[:2000])
        return ExitCode.CONFIGURATION

    from transformers.utils import logging as transformers_logging

    from trainer.run import RunOptions, run

    # Per-file loading bars from every process would bury the training log, and so would the
    # libraries' deprecation notices about each other.
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)

    return run(job, RunOptions(serve_reports=not args.no_report, merge_adapter=args.merge), stop).exit_code


if __name__ == "__main__":
    from trainer.launch import record_exit_code

    code = main()
    record_exit_code(code)
    raise SystemExit(code)
