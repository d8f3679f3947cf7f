"""How ``t1`` ends: one exit status per kind of failure, one per way a watched job ends, and a hint
for each error code.

| status | meaning |
|---|---|
| 0 | done |
| 1 | ``t1 validate`` / ``t1 convert`` found invalid manifests or bodies |
| 2 | the command line or a value is wrong (CONFIGURATION_ERROR, usage) |
| 3 | not found (JOB_NOT_FOUND, DATASET_NOT_FOUND, CHECKPOINT_NOT_FOUND, LOG_NOT_FOUND) |
| 4 | refused by the state of things (ALREADY_EXISTS, INVALID_JOB_STATE, INSUFFICIENT_RESOURCES) |
| 5 | the credential was refused or RBAC forbids it (UNAUTHENTICATED, FORBIDDEN) |
| 6 | the cluster or the gateway cannot be reached (CONNECTION_ERROR) |
| 7 | any other error (INTERNAL_ERROR, MISSING_EXTRA, DATA_ERROR) |
| 8 | ``t1 download``: the object store failed or refused a transfer (STORE_ERROR), the pod that copies from the checkpoint claim did not start or its copy failed (TRANSFER_ERROR), or a file's SHA-256 differs (DIGEST_MISMATCH) |
| 10 | ``t1 watch``: the job ended Failed |
| 11 | ``t1 watch``: the job ended Cancelled |
| 12 | ``t1 watch``: the job was Stopped (``spec.suspend``; it may be resumed) |
| 130 | interrupted (Ctrl-C) |
| 141 | the reader of the output went away (``t1 list \\| head``), as a shell reports SIGPIPE |
"""

from __future__ import annotations

OK = 0
INVALID = 1
USAGE = 2
NOT_FOUND = 3
REFUSED = 4
NOT_ALLOWED = 5
UNREACHABLE = 6
OTHER = 7
STORE = 8
# How the job that t1 watch followed ended (Completed is OK); past the failures above, so that a
# script tells "t1 could not watch" from "the job did not complete".
JOB_FAILED = 10
JOB_CANCELLED = 11
JOB_STOPPED = 12
INTERRUPTED = 130
BROKEN_PIPE = 141

_BY_CODE = {
    "CONFIGURATION_ERROR": USAGE,
    "JOB_NOT_FOUND": NOT_FOUND,
    "DATASET_NOT_FOUND": NOT_FOUND,
    "CHECKPOINT_NOT_FOUND": NOT_FOUND,
    "LOG_NOT_FOUND": NOT_FOUND,
    "ALREADY_EXISTS": REFUSED,
    "INVALID_JOB_STATE": REFUSED,
    "INSUFFICIENT_RESOURCES": REFUSED,
    "UNAUTHENTICATED": NOT_ALLOWED,
    "FORBIDDEN": NOT_ALLOWED,
    "CONNECTION_ERROR": UNREACHABLE,
    "STORE_ERROR": STORE,
    "TRANSFER_ERROR": STORE,
    "DIGEST_MISMATCH": STORE,
}

HINTS = {
    "CONFIGURATION_ERROR": "t1 validate FILE checks manifests offline; docs/api.md lists every field",
    "JOB_NOT_FOUND": "t1 list shows this namespace's jobs; -n NAMESPACE looks in another",
    "DATASET_NOT_FOUND": "t1 datasets list shows this namespace's Datasets; t1 datasets create -f dataset.yaml "
    "creates one (in the job's namespace)",
    "CHECKPOINT_NOT_FOUND": "t1 checkpoints JOB lists the job's checkpoints",
    "LOG_NOT_FOUND": "t1 get JOB shows the job's phase, t1 events JOB what happened to it, t1 plot JOB its loss curves",
    "ALREADY_EXISTS": "choose another name, or t1 delete the existing one first",
    "INVALID_JOB_STATE": "t1 get JOB shows its status",
    "INSUFFICIENT_RESOURCES": "choose one of the available GPU types, or add a node that offers it",
    "UNAUTHENTICATED": "refresh the kubeconfig's credential, or for the gateway $TENSORONE_API_KEY; kubectl auth whoami shows who you are",
    "FORBIDDEN": "kubectl auth can-i create trainingjobs.training.tensorone.ai -n NAMESPACE; ask for the tensorone "
    "editor role in the namespace",
    "CONNECTION_ERROR": "kubectl cluster-info checks the kubeconfig's server; for the gateway, TENSORONE_BASE_URL",
    "STORE_ERROR": "the store's credentials on this machine are the AWS tools' (AWS_ACCESS_KEY_ID, AWS_PROFILE, "
    "~/.aws); --endpoint-url names a store the cluster reaches by another address",
    "TRANSFER_ERROR": "--image IMAGE copies with another image (it needs tar and sleep), --start-timeout SECONDS "
    "waits longer for its pull; docs/output.md says what a download from the claim needs",
    "DIGEST_MISMATCH": "the file changed after it was written: in the store after the export (the job's checkpoint "
    "claim still holds it), or on the claim after the trainer wrote it (another checkpoint may be whole: t1 "
    "checkpoints JOB)",
}
# Hints for an error about one field, before the hint of its code.
FIELD_HINTS = {
    "TENSORONE_BASE_URL": "unset TENSORONE_BASE_URL for this verb (env -u TENSORONE_BASE_URL t1 ...): t1 then uses "
    "the kubeconfig",
}
# The exit status of t1 watch for each phase that ends the watch.
_BY_FINAL_PHASE = {"Completed": OK, "Failed": JOB_FAILED, "Cancelled": JOB_CANCELLED, "Stopped": JOB_STOPPED}


def exit_code(code: str) -> int:
    """The exit status for an error code."""
    return _BY_CODE.get(code, OTHER)


def hint(code: str, field: str | None) -> str | None:
    """The hint for an error: its field's, else its code's, else none."""
    return FIELD_HINTS.get(field or "") or HINTS.get(code)


def final_phase_exit_code(phase: str) -> int:
    """The exit status of t1 watch once the job is in ``phase`` (Completed, Failed, Cancelled, Stopped)."""
    return _BY_FINAL_PHASE[phase]
