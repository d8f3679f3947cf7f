"""The causal language model: loaded with ``from_pretrained``, prepared for its strategy, saved.

One loading path for every model, a hub id or a local folder: ``AutoModelForCausalLM`` and
``AutoTokenizer``, the hub token from ``HF_TOKEN`` (the operator fills it from the job's
``hubTokenSecret``), the cache in ``cacheDir``, and no network at all when ``HF_HUB_OFFLINE`` is set.

Strategies: ``lora`` wraps the frozen model in peft adapters; ``qlora`` loads the model in 4 bits
(bitsandbytes, CUDA only) under the adapters; ``full`` trains every weight. Weights that are
trained are kept in fp32 (mixed precision comes from autocast, see precision.py); a frozen base
under LoRA is loaded in the compute dtype to save memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from tensorone.api.resolved import ResolvedJob
from tensorone.api.v1alpha1.trainingjob import MixedPrecision, Strategy
from tensorone.errors import ConfigurationError

ALL_LINEAR = "all-linear"


def base_model_of(job: ResolvedJob) -> str:
    """The model the job starts from: config.baseModel, else (vision) the architecture it builds
    (``check_rules`` requires one of them of every job the trainer runs)."""
    base_model = job.config.base_model or job.config.architecture
    assert base_model is not None, "config.baseModel (or, for vision, config.architecture) is required"
    return base_model


def hub_options(job: ResolvedJob) -> dict[str, Any]:
    """Arguments of every from_pretrained call: token, cache, offline mode."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    return {
        "token": os.environ.get("HF_TOKEN") or None,
        "cache_dir": job.cache_dir,
        "local_files_only": offline,
    }


def load_tokenizer(job: ResolvedJob) -> Any:
    """The base model's tokenizer, with a pad token (the eos token when the model has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model_of(job), **hub_options(job))
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"cannot load the tokenizer of {job.config.base_model}: {error}", field="config.baseModel"
        ) from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(job: ResolvedJob, device: torch.device, *, auto_class: Any = None) -> Any:
    """The base model on the device, wrapped for its strategy, in training mode.

    ``auto_class`` is the transformers auto class that loads it: ``AutoModelForCausalLM`` unless
    given (the multimodal task passes ``AutoModelForImageTextToText``).
    """
    if auto_class is None:
        from transformers import AutoModelForCausalLM

        auto_class = AutoModelForCausalLM
    strategy, optimization = job.config.strategy, job.config.optimization
    precision = MixedPrecision(optimization.mixed_precision)
    options = hub_options(job)
    if strategy == Strategy.qlora:
        from transformers import BitsAndBytesConfig

        compute_dtype = torch.bfloat16 if precision == MixedPrecision.bf16 else torch.float32
        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
        options["device_map"] = {"": device}
    elif strategy == Strategy.lora:
        options["dtype"] = {
            MixedPrecision.bf16: torch.bfloat16,
            MixedPrecision.fp16: torch.float16,
        }.get(precision, torch.float32)
    else:
        options["dtype"] = torch.float32
    try:
        model: Any = auto_class.from_pretrained(base_model_of(job), **options)
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot load {job.config.base_model}: {error}", field="config.baseModel") from error
    if strategy != Strategy.qlora:
        model.to(device)
    model.config.use_cache = False  # the key/value cache is for generation, not training

    if optimization.gradient_checkpointing:
        # Non-reentrant checkpointing works with a frozen embedding (no input grads needed).
        # transformers renamed the method in 5.x; the old name warns, then goes in v6.
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if strategy in (Strategy.lora, Strategy.qlora):
        model = _with_adapters(model, job)
    model.train()
    return model


def compile_layers(model: Any) -> None:
    """Compile each decoder layer in place (regional compilation, dynamic shapes).

    Layers rather than the whole model: one small graph compiled once and reused by every layer, and
    the model object, its state_dict keys and peft's wrapper stay as they are. Dynamic shapes because
    a packed row's length changes with every micro-batch.
    """
    from trainer.attention import base_transformers_model

    try:
        layers = getattr(base_transformers_model(model).get_decoder(), "layers", None)
    except (ConfigurationError, AttributeError, NotImplementedError):
        layers = None
    if not isinstance(layers, torch.nn.ModuleList):
        raise ConfigurationError(
            f"{type(model).__name__} has no list of decoder layers to compile; set it to false",
            field="config.optimization.compile",
        )
    for layer in layers:
        layer.compile(dynamic=True)


def _with_adapters(model: Any, job: ResolvedJob) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    lora = job.config.parameters
    assert lora is not None  # with_defaults gives LoRA parameters to every adapter strategy
    if job.config.strategy == Strategy.qlora:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=job.config.optimization.gradient_checkpointing
        )
    targets: list[str] | str | None = lora.target_modules
    if targets == [ALL_LINEAR]:
        targets = ALL_LINEAR
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as error:
        raise ConfigurationError(
            f"{error} (names of the model's modules, or the single entry all-linear)",
            field="config.parameters.targetModules",
        ) from error


# Fields of peft's adapter config that it keeps as sets and writes in the order of the process's
# string hashing, which changes from process to process.
ADAPTER_SET_FIELDS = ("target_modules", "exclude_modules")


def save_weights(model: Any, directory: Path) -> None:
    """The trained weights in the Hugging Face layout: the adapter for lora and qlora (so
    ``PeftModel.from_pretrained`` loads it), the whole model for full. The same weights give the
    same files, whichever process writes them (the output's sha256 compares runs): the adapter
    config's set-valued fields are written sorted."""
    model.save_pretrained(directory)
    adapter_config = directory / "adapter_config.json"
    if adapter_config.is_file():
        fields = json.loads(adapter_config.read_text())
        for name in ADAPTER_SET_FIELDS:
            if isinstance(fields.get(name), list):
                fields[name] = sorted(fields[name])
        adapter_config.write_text(json.dumps(fields, indent=2, sort_keys=True))


def load_weights(model: Any, directory: Path, strategy: Strategy | None) -> None:
    """Put weights written by ``save_weights`` back into the same model, exactly."""
    if strategy in (Strategy.lora, Strategy.qlora):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(directory / "adapter_model.safetensors"))
        unexpected = list(getattr(result, "unexpected_keys", []))
        if unexpected:
            raise ConfigurationError(
                f"the checkpoint's adapter does not fit this model (unexpected {unexpected[:3]})", field="resumeFrom"
            )
        return
    state: dict[str, torch.Tensor] = {}
    for file in sorted(directory.glob("*.safetensors")):
        state.update(load_file(file))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected and hasattr(type(model), "from_pretrained"):
        # save_pretrained may store weights under other names than the modules' (LLaVA's
        # language_model.model.*) or in another layout (fused experts): transformers' own loading
        # maps them back, exactly.
        state = type(model).from_pretrained(directory, dtype=torch.float32).state_dict()
        missing, unexpected = model.load_state_dict(state, strict=False)
    # save_pretrained writes a tied weight (lm_head tied to the embedding) once.
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    tied |= set(getattr(model, "all_tied_weights_keys", None) or [])
    really_missing = [key for key in missing if key not in tied]
    if unexpected or really_missing:
        raise ConfigurationError(
            f"the checkpoint's weights do not fit this model (missing {really_missing[:3]}, unexpected "
            f"{unexpected[:3]})",
            field="resumeFrom",
        )


def save_final(model: Any, tokenizer: Any, directory: Path, strategy: Strategy | None, *, merge: bool) -> list[Path]:
    """The final artifacts: the adapter (or model) and the tokenizer in ``directory``; with
    ``merge``, also the base model with the adapter merged in, in ``directory/merged``."""
    written = [directory]
    save_weights(model, directory)
    tokenizer.save_pretrained(directory)
    if merge and strategy == Strategy.lora:
        merged_dir = directory / "merged"
        merged = model.merge_and_unload()
        merged.save_pretrained(merged_dir)
        tokenizer.save_pretrained(merged_dir)
        written.append(merged_dir)
    return written
