"""The TrainingJob kind: a managed training run that the operator turns into a Kubeflow PyTorchJob.

The spec mirrors the reference REST API's create parameters (camelCase throughout, ``config``
included); the status mirrors its job details (progress, metrics, cost, checkpoints). Every
constraint written here ends up in the CRD: ranges and patterns as OpenAPI keywords, the rules
across fields as CEL (``x-kubernetes-validations``), so a bad manifest is refused at apply time.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from tensorone.api.v1alpha1.base import (
    CONDITIONS_SCHEMA_EXTRA,
    DNS_1035_PATTERN,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    MAX_JOB_NAME_LENGTH,
    ApiModel,
    Condition,
    cel,
)
from tensorone.errors import (
    CheckpointNotFound,
    ConfigurationError,
    DataError,
    DatasetNotFound,
    InsufficientResources,
    NotImplementedByTrainer,
)

# spec.gpuType is a key of the operator's GPU catalog: a DNS label of at most this many characters.
GPU_TYPE_MAX_LENGTH = 32


class ModelType(StrEnum):
    """What kind of model the job trains."""

    llm = "llm"
    vision = "vision"
    multimodal = "multimodal"
    custom = "custom"


class Strategy(StrEnum):
    """How the base model's weights are trained."""

    lora = "lora"
    qlora = "qlora"
    full = "full"


class Priority(StrEnum):
    """Scheduling priority; maps to a PriorityClass of the operator's chart."""

    high = "high"
    normal = "normal"
    low = "low"


class MixedPrecision(StrEnum):
    """Numeric precision of the forward and backward passes."""

    no = "no"
    fp16 = "fp16"
    bf16 = "bf16"


class ExitCodes(StrEnum):
    """What a custom image's exit codes mean: whether a restart can help is told by the code
    (``Trainer``, the trainer's table in tensorone.api.exit_codes) or not at all (``Any``)."""

    Any = "Any"
    Trainer = "Trainer"


class LrScheduler(StrEnum):
    """Learning-rate schedule after the warmup."""

    linear = "linear"
    cosine = "cosine"
    constant = "constant"


class Phase(StrEnum):
    """Where a TrainingJob is in its life."""

    Pending = "Pending"
    Queued = "Queued"
    Running = "Running"
    Stopping = "Stopping"
    Stopped = "Stopped"
    Completed = "Completed"
    Failed = "Failed"
    Cancelled = "Cancelled"


# Phases a job never leaves: the operator stops following it, the SDK stops waiting on it.
TERMINAL_PHASES = frozenset({Phase.Completed, Phase.Failed, Phase.Cancelled})


class ConditionType(StrEnum):
    """Types of a TrainingJob's conditions (``Ready`` is also a Dataset's one condition)."""

    # Summary conditions (kstatus): tools such as Argo CD and kubectl wait read them.
    Ready = "Ready"
    Reconciling = "Reconciling"
    Stalled = "Stalled"
    # The checks run before the PyTorchJob is created.
    ConfigurationValid = "ConfigurationValid"
    DatasetReady = "DatasetReady"
    ResourcesAvailable = "ResourcesAvailable"
    # Mirrored from the child PyTorchJob's conditions of the same type.
    Running = "Running"
    Suspended = "Suspended"
    Restarting = "Restarting"
    Succeeded = "Succeeded"
    Failed = "Failed"
    # Whether the rank-0 trainer's last progress report was accepted (set once one was refused).
    ReportValid = "ReportValid"
    # Whether the job's spending is under spec.maxCost (set while the job has one).
    WithinBudget = "WithinBudget"
    # Whether spec.output's upload is done and verified (set once the trainer tried it).
    Exported = "Exported"


CHECK_CONDITIONS = (ConditionType.ConfigurationValid, ConditionType.DatasetReady, ConditionType.ResourcesAvailable)
CHILD_CONDITIONS = (
    ConditionType.Running,
    ConditionType.Suspended,
    ConditionType.Restarting,
    ConditionType.Succeeded,
    ConditionType.Failed,
)


class Reason(StrEnum):
    """Reasons the operator writes on conditions and Events: the reference API's error codes, and
    CamelCase reasons for everything that is not an error."""

    # Error codes of a failed check (tensorone.errors names the same codes on its exceptions).
    CONFIGURATION_ERROR = ConfigurationError.code
    DATASET_NOT_FOUND = DatasetNotFound.code
    INSUFFICIENT_RESOURCES = InsufficientResources.code
    CLAIM_NOT_FOUND = "CLAIM_NOT_FOUND"
    # Error codes of a trainer that failed for good (tensorone.api.exit_codes maps its exit codes).
    DATA_ERROR = DataError.code
    CHECKPOINT_NOT_FOUND = CheckpointNotFound.code
    NOT_IMPLEMENTED = NotImplementedByTrainer.code
    # The checks passed.
    Checked = "Checked"
    Reconciled = "Reconciled"
    # Where the job is (the phase, and why).
    Creating = "Creating"
    Starting = "Starting"
    Resuming = "Resuming"
    Queued = "Queued"
    # Kueue took the quota back for a workload of higher priority (a stop with checkpoint), or the
    # cluster took a pod away (a drain, a spot reclaim: status.resourceUsage.preemptions).
    Preempted = "Preempted"
    Running = "Running"
    Restarting = "Restarting"
    Stopping = "Stopping"
    Stopped = "Stopped"
    Succeeded = "Succeeded"
    EarlyStopped = "EarlyStopped"
    Failed = "Failed"
    Cancelled = "Cancelled"
    # What the trainer reported.
    TrainingStarted = "TrainingStarted"
    TrainingResumed = "TrainingResumed"
    EpochCompleted = "EpochCompleted"
    CheckpointSaved = "CheckpointSaved"
    OutputWritten = "OutputWritten"
    Exporting = "Exporting"
    Exported = "Exported"
    ExportFailed = "ExportFailed"
    Diverged = "Diverged"
    TrainerNotice = "TrainerNotice"
    TrainingFailed = "TrainingFailed"
    RestartLimitExceeded = "RestartLimitExceeded"
    ReportAccepted = "ReportAccepted"
    ReportRefused = "ReportRefused"
    # Spending against spec.maxCost.
    BudgetAvailable = "BudgetAvailable"
    BudgetWarning = "BudgetWarning"
    BudgetExceeded = "BudgetExceeded"
    # A Dataset's source.
    Inline = "Inline"
    ClaimBound = "ClaimBound"
    Declared = "Declared"


# The most epochs a job may ask for; a progress report can claim no more.
MAX_EPOCHS = 10000
ModuleName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.*-]+$")]
Tag = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.:/]*[A-Za-z0-9])?$")]
Argument = Annotated[str, Field(max_length=4096)]
PixelSize = Annotated[int, Field(ge=16, le=8192)]


class LoraParameters(ApiModel):
    """LoRA adapter parameters (strategies lora and qlora)."""

    rank: int = Field(default=16, ge=1, le=1024, description="Rank r of the low-rank update matrices.")
    alpha: int = Field(
        default=32, ge=1, le=8192, description="Scaling numerator: the update is scaled by alpha / rank."
    )
    dropout: float = Field(
        default=0.05, ge=0.0, le=0.9, description="Dropout probability applied to the adapter input (0 to 0.9)."
    )
    target_modules: list[ModuleName] | None = Field(
        default=None,
        max_length=64,
        description="Names of the modules that get adapters, such as q_proj and v_proj, or the single "
        "entry all-linear; absent means the model family's default attention projections.",
    )


# The evaluation measure early stopping and the best checkpoint go by unless a task metric is named.
EVAL_LOSS_METRIC = "evalLoss"


class MetricMode(StrEnum):
    """Whether a lower or a higher value of a metric is better."""

    min = "min"
    max = "max"


class EarlyStopping(ApiModel):
    """End the training when the evaluation metric stops improving."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.metric != '{EVAL_LOSS_METRIC}' || self.mode == 'min'",
                    f"config.training.earlyStopping.mode must be min for metric {EVAL_LOSS_METRIC} (a lower loss is "
                    "better); max applies to task metrics such as mAP",
                    ".mode",
                ),
            ]
        }
    )

    metric: str = Field(
        default=EVAL_LOSS_METRIC,
        max_length=64,
        pattern=r"^[A-Za-z][A-Za-z0-9_.@-]{0,63}$",
        description=f"What is watched: {EVAL_LOSS_METRIC} (the loss on the evaluation split), or the name of one "
        "of the task's evaluation metrics (status.metrics.evalMetrics, such as mAP for object detection).",
    )
    mode: MetricMode = Field(
        default=MetricMode.min, description="min: lower is better (losses); max: higher is better (mAP, accuracy)."
    )
    patience: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Evaluations in a row without improvement after which the training ends (reason EarlyStopped).",
    )
    min_delta: float = Field(
        default=0.0,
        ge=0.0,
        le=1e6,
        description="How much better than the best so far a value must be to count as an improvement (0 or more).",
    )


class OutputFrom(StrEnum):
    """Which weights become the job's output."""

    last = "last"
    best = "best"


class OutputConfig(ApiModel):
    """What the trainer writes as the final model (under output/ on the checkpoint claim)."""

    merge: bool = Field(
        default=False,
        description="Also write the base model with the LoRA adapter merged in (output/merged, safetensors, "
        "loadable with AutoModelForCausalLM.from_pretrained without peft); strategy lora only.",
    )
    from_: OutputFrom = Field(
        default=OutputFrom.last,
        alias="from",
        description="last: the weights at the end of the training; best: those of the best checkpoint "
        "(status.bestCheckpoint, by the early-stopping metric, else the evaluation loss); best needs "
        "config.training.evalSplit > 0.",
    )


class TrainingHyperparameters(ApiModel):
    """Optimization loop settings."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.earlyStopping) || self.evalSplit > 0.0",
                    "config.training.earlyStopping needs config.training.evalSplit greater than 0: it watches "
                    "the evaluations",
                    ".earlyStopping",
                ),
            ]
        }
    )

    epochs: int = Field(default=1, ge=1, le=MAX_EPOCHS, description="Passes over the training data (at least 1).")
    batch_size: int = Field(default=8, ge=1, le=4096, description="Examples per device per forward pass.")
    learning_rate: float = Field(
        default=2e-4, ge=1e-6, le=1e-1, description="Peak learning rate, between 1e-6 and 1e-1."
    )
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0, description="Decoupled weight decay (AdamW), 0 to 1.")
    warmup_steps: int = Field(
        default=0, ge=0, le=1_000_000, description="Optimizer steps of linear warmup from 0 to the peak learning rate."
    )
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, le=1024, description="Micro-batches accumulated into one optimizer step."
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=100_000_000,
        description="Stop after this many optimizer steps; when set it takes precedence over epochs.",
    )
    lr_scheduler: LrScheduler = Field(
        default=LrScheduler.linear, description="Schedule after warmup: linear, cosine or constant."
    )
    seed: int = Field(
        default=42, ge=0, le=2**31 - 1, description="Seed of every random generator, for reproducible runs."
    )
    max_seq_length: int = Field(
        default=2048, ge=8, le=131072, description="Tokens per example; longer examples are truncated."
    )
    eval_split: float = Field(
        default=0.0,
        ge=0.0,
        le=0.5,
        description="Fraction of the dataset held out for evaluation (0 to 0.5); 0 disables evaluation.",
    )
    eval_steps: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Evaluate every this many optimizer steps (and at the end of every epoch); needs evalSplit > 0.",
    )
    checkpoint_steps: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Save a checkpoint every this many optimizer steps, beside the one at the end of every epoch.",
    )
    checkpoint_every_epoch: bool = Field(default=True, description="Save a checkpoint at the end of every epoch.")
    keep_checkpoints: int = Field(
        default=3, ge=1, le=100, description="Checkpoints kept: the last this many plus the one with the best loss."
    )
    momentum: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        description="SGD momentum (vision jobs); when set, the optimizer is SGD with Nesterov momentum instead of AdamW.",
    )
    max_bad_rows: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Fraction of dataset rows that may be unreadable before the job fails (0 to 1).",
    )
    early_stopping: EarlyStopping | None = Field(
        default=None,
        description="End the training once the evaluation metric has not improved for `patience` evaluations "
        "(phase Completed, reason EarlyStopped); needs evalSplit > 0. The best checkpoint is kept whatever "
        "keepCheckpoints says.",
    )


class Optimization(ApiModel):
    """Memory and numeric settings."""

    mixed_precision: MixedPrecision = Field(
        default=MixedPrecision.no,
        description="no, fp16 or bf16. fp16 needs a GPU; on CPU the trainer refuses it rather than silently using fp32.",
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass: less memory for about a third more compute. "
        "Only when the job would not fit otherwise.",
    )
    compile: bool = Field(
        default=False,
        description="Compile each decoder layer with torch.compile: faster steps after a compilation of a minute "
        "or more when the job starts. Worth it for long runs.",
    )
    max_grad_norm: float = Field(
        default=1.0, ge=0.0, le=1000.0, description="Clip the global gradient norm to this value; 0 disables clipping."
    )


class Augmentation(ApiModel):
    """Image augmentation probabilities and gains (vision jobs)."""

    mixup: float | None = Field(default=None, ge=0.0, le=1.0, description="Probability of MixUp between two images.")
    copy_paste: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Probability of copy-paste augmentation of segments."
    )
    mosaic: float | None = Field(default=None, ge=0.0, le=1.0, description="Probability of a 4-image mosaic.")
    hsv_h: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Hue jitter, as a fraction of the hue circle."
    )
    hsv_s: float | None = Field(default=None, ge=0.0, le=1.0, description="Saturation jitter, as a fraction.")
    hsv_v: float | None = Field(default=None, ge=0.0, le=1.0, description="Value (brightness) jitter, as a fraction.")
    fliplr: float | None = Field(default=None, ge=0.0, le=1.0, description="Probability of a horizontal flip.")
    flipud: float | None = Field(default=None, ge=0.0, le=1.0, description="Probability of a vertical flip.")
    degrees: float | None = Field(default=None, ge=0.0, le=180.0, description="Maximum rotation in degrees.")
    scale: float | None = Field(default=None, ge=0.0, le=1.0, description="Maximum scale gain, as a fraction.")
    translate: float | None = Field(default=None, ge=0.0, le=1.0, description="Maximum translation, as a fraction.")


class EnvVar(ApiModel):
    """An environment variable with a literal value."""

    name: str = Field(
        min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name."
    )
    value: str = Field(default="", max_length=32768, description="Variable value.")


class CustomContainer(ApiModel):
    """A user's own training image (modelType custom). The operator passes command and args as an
    argument vector, never through a shell."""

    image: str = Field(
        min_length=1,
        max_length=512,
        pattern=r"^[^\s]+$",
        description="Container image reference, preferably by digest.",
    )
    command: list[Argument] | None = Field(
        default=None, max_length=64, description="Entrypoint argument vector; absent means the image's entrypoint."
    )
    args: list[Argument] | None = Field(default=None, max_length=256, description="Arguments to the entrypoint.")
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=128,
        description="Extra environment variables; names the operator sets (TENSORONE_*, MASTER_*, RANK, WORLD_SIZE) are refused.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    progress_port: int | None = Field(
        default=None,
        ge=1024,
        le=65535,
        description="Port where the container serves the JSON progress snapshot (tensorone trainer protocol); "
        "absent means the default trainer port.",
    )
    exit_codes: ExitCodes = Field(
        default=ExitCodes.Any,
        description="What the container's exit codes mean. Any: every failure is restarted, up to "
        "spec.maxRestarts (backoffLimit). Trainer: they follow the TensorOne trainer's table: 1-127 is a "
        "permanent error that fails the job at once (2-6 name its reason), 128-255 is restarted, counted "
        "by the operator against spec.maxRestarts.",
    )


class SecretKeyRef(ApiModel):
    """A key of a Secret in the job's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Secret name.")
    key: str = Field(
        default="token",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key within the Secret.",
    )


SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
HttpUrl = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://[^\s/?#]+[^\s]*$")]


class WandbMode(StrEnum):
    """Whether Weights & Biases sends the run as it goes, or keeps it on the checkpoint claim."""

    online = "online"
    offline = "offline"


class BasicAuthSecretRef(ApiModel):
    """A Secret in the job's namespace holding a user name and a password (a kubernetes.io/basic-auth
    Secret has exactly these keys)."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Secret name.")
    username_key: SecretKey = Field(default="username", description="Key of the user name within the Secret.")
    password_key: SecretKey = Field(default="password", description="Key of the password within the Secret.")


class MlflowTracking(ApiModel):
    """An MLflow tracking server: the job is one run of an experiment there."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.credentialsSecret) || !has(self.tokenSecret)",
                    "config.tracking.mlflow takes credentialsSecret (user name and password) or tokenSecret "
                    "(a bearer token), not both",
                    ".tokenSecret",
                ),
            ]
        }
    )

    tracking_uri: HttpUrl = Field(
        description="URL of the tracking server (http or https), for example https://mlflow.example.com.",
    )
    experiment: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Experiment the run belongs to, created when missing; absent means the job's namespace.",
    )
    credentials_secret: BasicAuthSecretRef | None = Field(
        default=None,
        description="Secret with the server's user name and password (MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD in the trainer); absent means no basic authentication.",
    )
    token_secret: SecretKeyRef | None = Field(
        default=None, description="Secret key holding a bearer token for the server (MLFLOW_TRACKING_TOKEN)."
    )
    log_checkpoints: bool = Field(
        default=False,
        description="Upload each checkpoint's model folder and manifest as artifacts of the run "
        "(checkpoints/<id>/), as it is saved. The upload holds the training up for its duration: fine for "
        "adapters, slow for a full model.",
    )


class TensorBoardTracking(ApiModel):
    """TensorBoard event files on the checkpoint claim."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!self.logDir.matches('^(ckpt-|output(/|$)|wandb(/|$)|metrics[.]jsonl$|tracking[.]json$)')",
                    "config.tracking.tensorboard.logDir must not be a checkpoint's name (ckpt-...), output, "
                    "wandb, metrics.jsonl or tracking.json: the trainer writes those",
                    ".logDir",
                ),
            ]
        }
    )

    log_dir: str = Field(
        default="tensorboard",
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*(/[A-Za-z0-9][-A-Za-z0-9_.]*)*$",
        description="Folder of the event files, relative to the checkpoint claim's root: point "
        "`tensorboard --logdir` at it.",
    )


class WandbTracking(ApiModel):
    """A Weights & Biases run."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.mode == 'offline' || has(self.apiKeySecret)",
                    "config.tracking.wandb.apiKeySecret is required in mode online; mode offline needs no key",
                    ".apiKeySecret",
                ),
            ]
        }
    )

    project: str = Field(
        min_length=1, max_length=128, pattern=r"^[^/\\#?%:\s]+$", description="W&B project of the run."
    )
    entity: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$",
        description="W&B entity (user or team); absent means the API key's default entity.",
    )
    mode: WandbMode = Field(
        default=WandbMode.online,
        description="online sends the run as it goes; offline writes it to wandb/ on the checkpoint claim, "
        "for `wandb sync` later (no key, no network).",
    )
    api_key_secret: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the W&B API key (WANDB_API_KEY); required in mode online."
    )
    base_url: HttpUrl | None = Field(
        default=None, description="URL of a self-hosted W&B server (WANDB_BASE_URL); absent means W&B's cloud."
    )
    log_checkpoints: bool = Field(
        default=False,
        description="Log each checkpoint's model folder and manifest as a model artifact of the run, as it "
        "is saved (aliases: the checkpoint id and latest).",
    )


class Tracking(ApiModel):
    """Experiment trackers the trainer (rank 0) reports to: hyperparameters, every step's metrics,
    evaluations and, where asked, checkpoints. A stopped and resumed job continues the same runs."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.mlflow) || has(self.tensorboard) || has(self.wandb)",
                    "config.tracking needs at least one of mlflow, tensorboard or wandb",
                ),
            ]
        }
    )

    run_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Name of the run in every tracker; absent means the job's name.",
    )
    mlflow: MlflowTracking | None = Field(default=None, description="Report to an MLflow tracking server.")
    tensorboard: TensorBoardTracking | None = Field(
        default=None, description="Write TensorBoard event files on the checkpoint claim."
    )
    wandb: WandbTracking | None = Field(default=None, description="Report to Weights & Biases.")


class TrainingConfig(ApiModel):
    """What to train and how. Fields apply by modelType and strategy; the CRD refuses a field where
    it makes no sense (for example LoRA parameters with strategy full)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.parameters) || (has(self.strategy) && self.strategy in ['lora', 'qlora'])",
                    "config.parameters (LoRA rank, alpha, dropout, targetModules) applies only to strategy lora or qlora",
                    ".parameters",
                ),
                cel(
                    "!has(self.training) || !has(self.training.evalSteps) || self.training.evalSplit > 0.0",
                    "config.training.evalSteps needs config.training.evalSplit greater than 0",
                    ".training.evalSteps",
                ),
                cel(
                    "!has(self.optimization) || self.optimization.mixedPrecision != 'fp16' || "
                    "!has(self.strategy) || self.strategy != 'qlora'",
                    "config.optimization.mixedPrecision fp16 is not supported with strategy qlora; use bf16 or no",
                    ".optimization.mixedPrecision",
                ),
                cel(
                    "!has(self.output) || !self.output.merge || (has(self.strategy) && self.strategy == 'lora')",
                    "config.output.merge applies only to strategy lora (qlora's base is 4-bit; full has no adapter)",
                    ".output.merge",
                ),
                cel(
                    "!has(self.output) || self.output.from != 'best' || "
                    "(has(self.training) && self.training.evalSplit > 0.0)",
                    "config.output.from best needs config.training.evalSplit greater than 0: the best checkpoint "
                    "is chosen by its evaluation",
                    ".output.from",
                ),
            ]
        }
    )

    base_model: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        pattern=r"^[^\s]+$",
        description="Model to start from: a Hugging Face hub id (meta-llama/Llama-2-7b-hf) or a path inside "
        "the training pod (/models/llama). Required for llm and multimodal jobs.",
    )
    strategy: Strategy | None = Field(
        default=None,
        description="lora (adapters on a frozen model), qlora (adapters on a 4-bit model; GPU only) or full "
        "(every weight trained). Required for llm and multimodal jobs.",
    )
    parameters: LoraParameters | None = Field(
        default=None, description="LoRA parameters; only with strategy lora or qlora."
    )
    training: TrainingHyperparameters | None = Field(default=None, description="Optimization loop settings.")
    optimization: Optimization | None = Field(default=None, description="Memory and numeric settings.")
    architecture: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_./]*$",
        description="Vision architecture to build (resnet18, resnet50, vit-base, yolov8, ...); vision jobs only.",
    )
    input_size: list[PixelSize] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="Input image [height, width] in pixels (16 to 8192); vision jobs only.",
    )
    num_classes: int | None = Field(
        default=None, ge=1, le=100000, description="Number of target classes; vision jobs only."
    )
    augmentation: Augmentation | None = Field(default=None, description="Image augmentation; vision jobs only.")
    custom: CustomContainer | None = Field(
        default=None, description="The user's own container; required for, and only for, custom jobs."
    )
    tracking: Tracking | None = Field(
        default=None,
        description="Experiment tracking (MLflow, TensorBoard, Weights & Biases) by the TensorOne trainer; "
        "not for custom jobs, whose own code tracks.",
    )
    output: OutputConfig | None = Field(
        default=None, description="What becomes the final model: merged or not, the last or the best weights."
    )


class CheckpointStorage(ApiModel):
    """Where checkpoints are written: a PersistentVolumeClaim shared by every worker."""

    claim_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="An existing claim to use; absent means the operator creates <job>-checkpoints and keeps it "
        "after cancel (deleted with the job).",
    )
    size: str = Field(
        default="20Gi",
        max_length=32,
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$",
        description="Size of the claim the operator creates (a Kubernetes quantity such as 50Gi).",
    )
    storage_class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="StorageClass of the claim the operator creates; absent means the cluster default.",
    )


# spec.output.uri: s3://<bucket>[/<prefix>]. The bucket as S3 names them (3 to 63 lower-case letters,
# digits, '.' and '-'); the prefix in '/'-separated segments of the characters S3 calls safe in a key.
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!_.*'()-]+)*/?$"
# The Secret keys of an S3 access key pair, by default the variable names the AWS tools read.
DEFAULT_ACCESS_KEY_ID_KEY = "AWS_ACCESS_KEY_ID"
DEFAULT_SECRET_ACCESS_KEY_KEY = "AWS_SECRET_ACCESS_KEY"


class S3CredentialsSecretRef(ApiModel):
    """A Secret in the job's namespace holding an S3 access key pair."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Secret name.")
    access_key_id_key: SecretKey = Field(
        default=DEFAULT_ACCESS_KEY_ID_KEY, description="Key of the access key id within the Secret."
    )
    secret_access_key_key: SecretKey = Field(
        default=DEFAULT_SECRET_ACCESS_KEY_KEY, description="Key of the secret access key within the Secret."
    )
    session_token_key: SecretKey | None = Field(
        default=None, description="Key of a session token within the Secret, for temporary credentials."
    )


class OutputExport(ApiModel):
    """Where the trained model is uploaded once the training completes: S3 or an S3-compatible store
    (MinIO, Ceph, GCS's and R2's S3 APIs). Rank 0 uploads after writing the output; the model stays on
    the checkpoint claim whatever happens to the upload."""

    uri: str = Field(
        min_length=8,
        max_length=1024,
        pattern=S3_URI_PATTERN,
        description="s3://<bucket>[/<prefix>]: the job's files go under <uri>/<job name>/ (output/, "
        "checkpoints/<id>/ and manifest.json, the digests of every file, written last).",
    )
    endpoint_url: HttpUrl | None = Field(
        default=None,
        description="URL of an S3-compatible server (http or https), such as http://minio.minio.svc:9000; absent "
        "means AWS S3.",
    )
    region: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][-a-z0-9]*$",
        description="Region of the bucket (AWS_REGION); absent means us-east-1, or what the endpoint ignores.",
    )
    credentials_secret: S3CredentialsSecretRef | None = Field(
        default=None,
        description="Secret with the access key pair, given to the training containers as variables read from the Secret "
        "(secretKeyRef: the operator never reads it); absent means the pod's own identity (IRSA, EKS Pod Identity, an instance role). Never inline.",
    )
    checkpoints: bool = Field(
        default=False,
        description="Also upload the checkpoints kept on the claim (checkpoints/<id>/, each with its optimizer "
        "state, so a job elsewhere can resume from it), after the final model.",
    )


class TrainingJobSpec(ApiModel):
    """Desired state of a TrainingJob. Mirrors the reference create-job parameters; lifecycle verbs
    (stop, resume, cancel) are fields too, so GitOps can drive them."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.modelType != 'custom' || has(self.config.custom)",
                    "config.custom (image, command, args, env) is required when modelType is custom",
                    ".config",
                ),
                cel(
                    "self.modelType != 'custom' || !has(self.config.tracking)",
                    "config.tracking applies to the TensorOne trainer; a custom image tracks experiments with its own code",
                    ".config.tracking",
                ),
                cel(
                    "self.modelType != 'custom' || !has(self.output)",
                    "output (the upload of the final model) applies to the TensorOne trainer; a custom image uploads "
                    "its model with its own code",
                    ".output",
                ),
                cel(
                    "self.modelType == 'custom' || !has(self.config.custom)",
                    "config.custom applies only to modelType custom",
                    ".config.custom",
                ),
                cel(
                    "!(self.modelType in ['llm', 'multimodal']) || (has(self.config.baseModel) && has(self.config.strategy))",
                    "config.baseModel and config.strategy (lora, qlora or full) are required when modelType is llm or multimodal",
                    ".config",
                ),
                cel(
                    "self.modelType != 'vision' || has(self.config.architecture) || has(self.config.baseModel)",
                    "config.architecture (or config.baseModel) is required when modelType is vision",
                    ".config",
                ),
                cel(
                    "self.modelType == 'vision' || (!has(self.config.architecture) && !has(self.config.inputSize) "
                    "&& !has(self.config.numClasses) && !has(self.config.augmentation))",
                    "config.architecture, inputSize, numClasses and augmentation apply only to modelType vision",
                    ".config",
                ),
                cel(
                    "self.modelType != 'vision' || !has(self.config.strategy) || self.config.strategy == 'full'",
                    "vision jobs train every weight: config.strategy must be full or absent",
                    ".config.strategy",
                ),
                cel(
                    "has(self.gpuType) || !has(self.gpusPerWorker)",
                    "gpusPerWorker needs gpuType; a job without gpuType runs on CPU",
                    ".gpusPerWorker",
                ),
                cel(
                    "has(self.gpuType) || !self.spot",
                    "spot needs gpuType: spot capacity is a setting of the GPU catalog",
                    ".spot",
                ),
                cel(
                    "has(self.gpuType) || !has(self.config.strategy) || self.config.strategy != 'qlora'",
                    "strategy qlora needs a GPU: set gpuType",
                    ".gpuType",
                ),
                cel(
                    "has(self.gpuType) || !has(self.config.optimization) || self.config.optimization.mixedPrecision != 'fp16'",
                    "mixedPrecision fp16 needs a GPU: set gpuType, or use bf16 or no on CPU",
                    ".config.optimization.mixedPrecision",
                ),
                # Immutability of what defines the training: pods of a running PyTorchJob cannot
                # change, and a changed config would make checkpoints meaningless. Create a new
                # job (it may start from this job's checkpoint claim) to train differently.
                cel(
                    "self.modelType == oldSelf.modelType && self.datasetId == oldSelf.datasetId "
                    "&& self.config == oldSelf.config",
                    "modelType, datasetId and config are immutable; create a new TrainingJob to train differently",
                    reason="FieldValueForbidden",
                ),
                cel(
                    "self.maxWorkers == oldSelf.maxWorkers && has(self.gpuType) == has(oldSelf.gpuType) "
                    "&& (!has(self.gpuType) || self.gpuType == oldSelf.gpuType) "
                    "&& has(self.gpusPerWorker) == has(oldSelf.gpusPerWorker) "
                    "&& (!has(self.gpusPerWorker) || self.gpusPerWorker == oldSelf.gpusPerWorker) "
                    "&& self.spot == oldSelf.spot",
                    "gpuType, gpusPerWorker, maxWorkers and spot are immutable; stop the job and create a new one to "
                    "change resources",
                    reason="FieldValueForbidden",
                ),
                cel(
                    "has(self.output) == has(oldSelf.output) && (!has(self.output) || self.output == oldSelf.output)",
                    "output is immutable: the trainer reads it when it starts; create a new TrainingJob to export "
                    "elsewhere",
                    ".output",
                    reason="FieldValueForbidden",
                ),
                cel(
                    "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
                    "cancel cannot be undone: a cancelled job stays cancelled (its checkpoints are kept)",
                    ".cancel",
                    reason="FieldValueForbidden",
                ),
            ]
        }
    )

    model_type: ModelType = Field(description="Type of model to train: llm, vision, multimodal or custom.")
    dataset_id: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of a Dataset in the same namespace. The job waits (condition DatasetReady, reason "
        "DATASET_NOT_FOUND) until it exists.",
    )
    config: TrainingConfig = Field(description="Training configuration: model, strategy, hyperparameters.")
    description: str | None = Field(default=None, max_length=2048, description="Free-text description of the job.")
    tags: list[Tag] | None = Field(
        default=None,
        max_length=32,
        description="Tags for organisation and filtering (up to 32, each up to 63 characters).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    gpu_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=GPU_TYPE_MAX_LENGTH,
        pattern=DNS_LABEL_PATTERN,
        description="Key of the operator's GPU catalog (a100, h100, h200, v100, l4, a10g, rtx4090, ...); "
        "absent means a CPU-only job, for development clusters.",
    )
    max_workers: int = Field(default=1, ge=1, le=32, description="Number of training pods (1 to 32).")
    gpus_per_worker: int | None = Field(
        default=None, ge=1, le=16, description="GPUs per training pod (1 to 16; default 1 when gpuType is set)."
    )
    spot: bool = Field(
        default=False,
        description="Run the pods on spot (preemptible) capacity of the GPU type, at its spot price: the catalog "
        "entry's spot node labels and tolerations place them. Refused (CONFIGURATION_ERROR) for a GPU type without "
        "spot capacity. A preempted pod saves a checkpoint and the job resumes from it; preemptions are counted in "
        "status.resourceUsage.preemptions, not against maxRestarts.",
    )
    priority: Priority = Field(default=Priority.normal, description="Scheduling priority: high, normal or low.")
    suspend: bool = Field(
        default=False,
        description="Stop: true suspends the job; the trainer saves a checkpoint and the pods end (phase Stopped). "
        "Setting it back to false resumes from resumeFrom, or from the latest checkpoint.",
    )
    resume_from: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^(latest|none|[a-z0-9]([-a-z0-9_.]*[a-z0-9])?)$",
        description="Checkpoint id to resume from (ckpt-epoch-1, ckpt-step-500), latest (the default when "
        "checkpoints exist) or none to start over. It says where a start of the job begins (its creation, a "
        "resume after a stop, or a change of resumeFrom); pods that fail, are preempted or drained and come back "
        "go on from the newest checkpoint their start saved, not back to resumeFrom.",
    )
    cancel: bool | None = Field(
        default=None,
        description="Cancel: true ends the job for good (phase Cancelled): pods are deleted, checkpoints are "
        "kept. Cannot be set back to false.",
    )
    max_runtime_seconds: int | None = Field(
        default=None,
        ge=60,
        le=30 * 24 * 3600,
        description="Time limit in seconds while running (activeDeadlineSeconds of the PyTorchJob); the job "
        "fails with reason DeadlineExceeded past it.",
    )
    max_cost: float | None = Field(
        default=None,
        gt=0,
        le=1e9,
        description="Spending cap in the GPU catalog's currency (status.resourceUsage.cost counts against it). "
        "Events warn at 50% and 80%; at 100% the job is stopped with a checkpoint (phase Stopped, reason "
        "BudgetExceeded) and resumes from it once maxCost is raised above what was spent.",
    )
    max_restarts: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Pod failures restarted before the job fails. Our trainer's pods (and a custom image's "
        "with config.custom.exitCodes Trainer) are restarted only for an error that may be transient (exit "
        "code 128-255), counted by the operator; a permanent error (bad configuration, data or checkpoint) "
        "fails the job at once. Other custom images' pods are restarted for any failure (backoffLimit). A "
        "preemption (a pod drained, evicted or reclaimed: status.resourceUsage.preemptions) is not a failure.",
    )
    checkpoint_storage: CheckpointStorage | None = Field(
        default=None, description="Where checkpoints are written; absent means a 20Gi claim the operator creates."
    )
    hub_token_secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding a Hugging Face hub token (exposed to the trainer as HF_TOKEN) for gated models.",
    )
    output: OutputExport | None = Field(
        default=None,
        description="Upload the final model (and, with checkpoints, the kept checkpoints) to S3 or an S3-compatible "
        "store when the training completes; status.output.exportUri says where once every file is verified.",
    )


class Progress(ApiModel):
    """How far the training has come."""

    current_epoch: int | None = Field(default=None, ge=0, description="Epoch in progress (1-based).")
    total_epochs: int | None = Field(default=None, ge=0, description="Epochs the job will run.")
    current_step: int | None = Field(default=None, ge=0, description="Optimizer steps done.")
    total_steps: int | None = Field(default=None, ge=0, description="Optimizer steps the job will run.")
    percentage: float | None = Field(default=None, ge=0.0, le=100.0, description="Steps done as a percentage.")
    elapsed_time: int | None = Field(default=None, ge=0, description="Seconds spent training so far.")
    remaining_time: int | None = Field(default=None, ge=0, description="Estimated seconds of training left.")


# Task metrics measured on the evaluation split (mAP, mAP50 for detection): at most this many, each
# named like a Prometheus label value a user can read in kubectl.
MAX_EVAL_METRICS = 16
EVAL_METRIC_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.@-]{0,63}$"
EvalMetricName = Annotated[str, Field(pattern=EVAL_METRIC_NAME_PATTERN, max_length=64)]


class Metrics(ApiModel):
    """Latest training metrics, as reported by the rank-0 trainer."""

    current_loss: float | None = Field(default=None, description="Training loss of the latest optimizer step.")
    best_loss: float | None = Field(default=None, description="Lowest training loss so far.")
    eval_loss: float | None = Field(default=None, description="Latest evaluation loss on the held-out split.")
    best_eval_loss: float | None = Field(default=None, description="Lowest evaluation loss so far.")
    eval_perplexity: float | None = Field(
        default=None,
        ge=0.0,
        description="Perplexity at the latest evaluation (LLM jobs): exp of the mean loss per supervised token.",
    )
    learning_rate: float | None = Field(default=None, ge=0.0, description="Current learning rate.")
    throughput: str | None = Field(
        default=None, max_length=64, description="Throughput with its unit, for example 1250 tokens/sec."
    )
    throughput_value: float | None = Field(default=None, ge=0.0, description="Throughput as a number.")
    throughput_unit: str | None = Field(
        default=None, max_length=32, description="Unit of throughputValue: tokens/sec or samples/sec."
    )
    memory_usage: str | None = Field(
        default=None, max_length=32, description="Peak accelerator (or host) memory per worker, for example 38.2GB."
    )
    eval_metrics: dict[str, Annotated[float, Field(description="The metric's value.")]] | None = Field(
        default=None,
        max_length=MAX_EVAL_METRICS,
        description="The task's metrics on the evaluation split at the latest evaluation, by name: mAP "
        "(mean average precision over IoU 0.50 to 0.95) and mAP50 (at IoU 0.50) for object detection; accuracy "
        "and top5Accuracy (fractions, 0 to 1) for image classification. A name "
        "is a letter, then letters, digits, '_', '.', '@' or '-' (at most 64 characters).",
    )


class ResourceAllocation(ApiModel):
    """What the job was given, from the GPU catalog."""

    gpu_type: str | None = Field(
        default=None, max_length=128, description="Display name of the GPU, for example NVIDIA A100."
    )
    workers: int | None = Field(default=None, ge=0, description="Training pods.")
    gpus: int | None = Field(default=None, ge=0, description="GPUs in total across workers.")
    memory_per_worker: str | None = Field(
        default=None, max_length=32, description="GPU memory per worker, for example 80GB (host memory for CPU jobs)."
    )
    spot: bool | None = Field(
        default=None, description="True when the pods run on spot capacity (spec.spot), priced at the spot price."
    )


class EstimatedCost(ApiModel):
    """Cost estimate from the catalog's hourly prices (see docs on how the total is estimated)."""

    hourly: float | None = Field(default=None, ge=0.0, description="Price per hour for all workers' GPUs.")
    total: float | None = Field(
        default=None, ge=0.0, description="Estimated total: hourly times the estimated duration."
    )
    currency: str | None = Field(
        default=None, max_length=8, description="Currency of the catalog prices, for example USD."
    )


class ResourceUsage(ApiModel):
    """What the job has used so far."""

    running_seconds: float | None = Field(
        default=None, ge=0.0, description="Seconds the job has been running, summed over stops and resumes."
    )
    measured_at: datetime | None = Field(
        default=None, description="When runningSeconds was last brought up to date by the operator."
    )
    gpu_hours: float | None = Field(default=None, ge=0.0, description="GPU-hours consumed while running.")
    cost: float | None = Field(
        default=None,
        ge=0.0,
        description="Cost so far, from gpuHours and the catalog price (the spot price for a spot job).",
    )
    preemptions: int | None = Field(
        default=None,
        ge=0,
        description="Pods of the job the cluster took away while it ran (a spot reclaim, a node drain, an "
        "eviction): each saved a checkpoint, where it could, and the job resumed from its latest. Not counted "
        "against spec.maxRestarts.",
    )
    efficiency: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Share of running time spent in training steps (0 to 1), as defined in the docs.",
    )


class CheckpointType(StrEnum):
    """What an entry of a job's checkpoint listing is."""

    intermediate = "intermediate"
    final = "final"


class OutputKind(StrEnum):
    """What a model folder holds."""

    adapter = "adapter"  # a LoRA adapter: needs its base model
    merged = "merged"  # the base model with the adapter merged in
    full = "full"  # every weight of a fully trained model


MAX_STATUS_CHECKPOINTS = 50
# The id the final model has in a job's checkpoint listing.
FINAL_CHECKPOINT_ID = "final"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_PATH_LENGTH = 1024


class Checkpoint(ApiModel):
    """One checkpoint the trainer saved."""

    id: str = Field(min_length=1, max_length=128, description="Checkpoint id, such as ckpt-epoch-1 or ckpt-step-500.")
    epoch: int | None = Field(default=None, ge=0, description="Epochs completed when it was saved.")
    step: int | None = Field(default=None, ge=0, description="Optimizer steps completed when it was saved.")
    loss: float | None = Field(default=None, description="Training loss when it was saved.")
    created_at: datetime | None = Field(default=None, description="When it was saved (RFC 3339).")
    size: str | None = Field(default=None, max_length=32, description="Size on disk, for example 2.3GB.")
    reason: str | None = Field(
        default=None,
        max_length=32,
        description="Why it was saved: epoch, step, stop, final, or best (an evaluation that improved on "
        "the best so far).",
    )
    type: CheckpointType | None = Field(
        default=None,
        description="intermediate (a checkpoint to resume from) or final (the job's output model; listed by "
        "list_checkpoints and `t1 checkpoints`, not in status.checkpoints).",
    )


class ModelArtifact(ApiModel):
    """A model folder the trainer wrote."""

    path: str = Field(
        min_length=1,
        max_length=MAX_PATH_LENGTH,
        description="Folder on the checkpoint claim, relative to its root (output), or an absolute path for a "
        "local run writing elsewhere.",
    )
    kind: OutputKind = Field(description="adapter (LoRA, needs baseModel), merged or full.")
    size_bytes: int = Field(ge=0, description="Bytes of every file in the folder.")
    size: str | None = Field(default=None, max_length=32, description="The same, readable: 12.3MB.")
    sha256: str = Field(
        pattern=SHA256_PATTERN,
        max_length=64,
        description="Content digest: SHA-256 of the `sha256sum`-style listing of every file (hex digest, two "
        "spaces, '/'-separated relative path, newline), sorted by path. A merged/ sub-folder is not part of "
        "its parent's digest.",
    )


class ModelOutput(ModelArtifact):
    """The job's final model."""

    base_model: str | None = Field(
        default=None, max_length=512, description="The model it was trained from (an adapter needs it to load)."
    )
    checkpoint: str | None = Field(
        default=None, max_length=128, description="The checkpoint whose weights it holds (config.output.from)."
    )
    created_at: datetime | None = Field(default=None, description="When it was written.")
    merged: ModelArtifact | None = Field(
        default=None, description="The adapter merged into the base weights, when config.output.merge is set."
    )
    export_uri: str | None = Field(
        default=None,
        max_length=2048,
        description="Where spec.output uploaded the job's files (s3://<bucket>/<prefix>/<job>: output/, "
        "checkpoints/<id>/, manifest.json), set once every file was uploaded and verified by its SHA-256. "
        "Condition Exported says why it is absent.",
    )
    exported_checkpoints: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None,
        max_length=MAX_STATUS_CHECKPOINTS,
        description="The checkpoints uploaded beside the output (spec.output.checkpoints), oldest first.",
    )


# Points of a loss curve kept in the status: enough to see convergence, small at any job length
# (the operator downsamples the trainer's curve to at most this many points).
MAX_HISTORY_POINTS = 64


class LossSample(ApiModel):
    """One point of a loss curve."""

    step: int = Field(ge=0, description="Optimizer step.")
    loss: float = Field(description="Loss at that step.")


class TrainingJobStatus(ApiModel):
    """Observed state of a TrainingJob, written only by the operator. Mirrors the reference job
    details."""

    phase: Phase | None = Field(
        default=None,
        description="Pending, Queued, Running, Stopping, Stopped, Completed, Failed or Cancelled.",
    )
    message: str | None = Field(default=None, max_length=4096, description="Human-readable summary of the state.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the operator last acted on."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=32,
        description="Ready, Reconciling and Stalled plus domain conditions (DatasetReady, ResourcesAvailable, "
        "Running, Suspended, Restarting, Succeeded, Failed).",
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )
    child_name: str | None = Field(
        default=None, max_length=253, description="Name of the PyTorchJob (or custom job) the operator created."
    )
    restarts: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Pod failures restarted so far (retryable exits of our trainer, or of a custom image "
        "with config.custom.exitCodes Trainer), counted against spec.maxRestarts; one more fails the job "
        "with reason RestartLimitExceeded.",
    )
    progress: Progress | None = Field(default=None, description="How far the training has come.")
    metrics: Metrics | None = Field(default=None, description="Latest training metrics.")
    resource_allocation: ResourceAllocation | None = Field(default=None, description="What the job was given.")
    estimated_cost: EstimatedCost | None = Field(default=None, description="Cost estimate.")
    resource_usage: ResourceUsage | None = Field(default=None, description="What the job has used so far.")
    checkpoints: list[Checkpoint] | None = Field(
        default=None,
        max_length=MAX_STATUS_CHECKPOINTS,
        description=f"Checkpoints on the job's storage, newest last (at most {MAX_STATUS_CHECKPOINTS}).",
    )
    best_checkpoint: str | None = Field(
        default=None,
        max_length=128,
        description="The checkpoint with the best evaluation (by config.training.earlyStopping's metric, else the "
        "evaluation loss); kept whatever keepCheckpoints says. Set when early stopping or config.output.from "
        "best is asked for.",
    )
    output: ModelOutput | None = Field(
        default=None,
        description="The final model, once the trainer wrote it: where, what, its size and digest, the base model "
        "it needs and the checkpoint it came from.",
    )
    loss_history: list[LossSample] | None = Field(
        default=None,
        max_length=MAX_HISTORY_POINTS,
        description=f"Training-loss curve, downsampled to at most {MAX_HISTORY_POINTS} points spread over "
        "the whole run (first and latest included), so `t1 get` shows convergence without Prometheus.",
    )
    eval_loss_history: list[LossSample] | None = Field(
        default=None,
        max_length=MAX_HISTORY_POINTS,
        description=f"Evaluation-loss curve, downsampled to at most {MAX_HISTORY_POINTS} points.",
    )
    last_report_time: datetime | None = Field(
        default=None, description="When the operator last read a progress report from the rank-0 trainer."
    )
    resumed_from: str | None = Field(
        default=None, max_length=128, description="Checkpoint the current run started from, if any."
    )
    started_at: datetime | None = Field(default=None, description="When training first started running.")
    completed_at: datetime | None = Field(default=None, description="When the job reached a terminal phase.")
    estimated_completion: datetime | None = Field(default=None, description="When the job is expected to finish.")


class ObjectMeta(ApiModel):
    """The subset of Kubernetes object metadata these types read."""

    model_config = ConfigDict(extra="allow")

    name: str | None = Field(default=None, description="Object name.")
    namespace: str | None = Field(default=None, description="Namespace.")
    labels: dict[str, str] | None = Field(default=None, description="Labels.")
    annotations: dict[str, str] | None = Field(default=None, description="Annotations.")
    uid: str | None = Field(default=None, description="Unique id the API server gave the object.")
    generation: int | None = Field(default=None, description="Version of the desired state (spec).")
    deletion_timestamp: datetime | None = Field(default=None, description="When deletion was requested.")


class TrainingJob(ApiModel):
    """A managed training run: the operator validates it, runs it as a Kubeflow PyTorchJob on GPU
    nodes, and mirrors progress, metrics and checkpoints into its status."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.metadata.name.size() <= {MAX_JOB_NAME_LENGTH}",
                    f"metadata.name must be at most {MAX_JOB_NAME_LENGTH} characters, so that every pod and "
                    "Service of the job stays within the 63-character DNS label limit",
                    ".metadata.name",
                ),
                cel(
                    f"self.metadata.name.matches('{DNS_1035_PATTERN}')",
                    "metadata.name must be a DNS-1035 label: lower-case letters, digits and '-', starting "
                    "with a letter and ending with a letter or digit",
                    ".metadata.name",
                ),
            ]
        }
    )

    api_version: Literal["training.tensorone.ai/v1alpha1"] = Field(
        default="training.tensorone.ai/v1alpha1", description="API version."
    )
    kind: Literal["TrainingJob"] = Field(default="TrainingJob", description="Kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: TrainingJobSpec = Field(description="Desired state.")
    status: TrainingJobStatus | None = Field(default=None, description="Observed state, written by the operator.")
