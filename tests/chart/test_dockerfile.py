"""The Dockerfile: pinned bases, a numeric non-root user and no build tools in the final images."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
FINAL_TARGETS = ("operator", "gateway", "trainer")
# Compilers, build systems and fetchers that must not end up in a final image.
BUILD_TOOLS = {
    "build-essential",
    "gcc",
    "g++",
    "cc",
    "clang",
    "make",
    "cmake",
    "ninja-build",
    "git",
    "curl",
    "wget",
    "python3-dev",
    "libc6-dev",
    "cargo",
    "rustc",
}
PINNED_IMAGE = re.compile(r"^[^\s:@]+(/[^\s:@]+)*:[0-9]+(\.[0-9]+){2}[-A-Za-z0-9.]*@sha256:[a-f0-9]{64}$")


@dataclass
class Stage:
    """One FROM ... AS name block."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if keyword == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                global_args[key.strip()] = value.strip()
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def _resolve(base: str, global_args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args.get(m.group(1) or m.group(2), m.group(0)), base)


def _chain(stage: Stage, stages: dict[str, Stage]) -> list[Stage]:
    """The stage and every stage it is built FROM, down to the external base image."""
    chain = [stage]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    global_args, stages = parse(DOCKERFILE.read_text())
    return global_args, {stage.name: stage for stage in stages}


def test_both_targets_exist(dockerfile: tuple[dict[str, str], dict[str, Stage]]) -> None:
    _, stages = dockerfile
    assert set(FINAL_TARGETS) <= set(stages)


def test_every_external_base_is_pinned_by_exact_tag_and_digest(
    dockerfile: tuple[dict[str, str], dict[str, Stage]],
) -> None:
    global_args, stages = dockerfile
    for stage in stages.values():
        if stage.base in stages:
            continue
        image = _resolve(stage.base, global_args)
        assert PINNED_IMAGE.match(image), (
            f"stage {stage.name}: base {image} must be pinned as name:X.Y.Z[-variant]@sha256:<digest>"
        )


@pytest.mark.parametrize("target", FINAL_TARGETS)
def test_final_images_run_as_a_numeric_non_root_user(
    dockerfile: tuple[dict[str, str], dict[str, Stage]], target: str
) -> None:
    _, stages = dockerfile
    users = [
        rest
        for stage in reversed(_chain(stages[target], stages))
        for keyword, rest in stage.instructions
        if keyword == "USER"
    ]
    assert users, f"{target}: no USER instruction, so the image runs as root"
    user, _, group = users[-1].partition(":")
    # Numeric, so the kubelet can verify runAsNonRoot without reading /etc/passwd.
    assert user.isdigit() and int(user) > 0, f"{target}: USER {users[-1]} must be a numeric, non-zero uid"
    assert not group or (group.isdigit() and int(group) > 0), f"{target}: group of USER {users[-1]}"


@pytest.mark.parametrize("target", FINAL_TARGETS)
def test_final_images_hold_no_build_tools(dockerfile: tuple[dict[str, str], dict[str, Stage]], target: str) -> None:
    _, stages = dockerfile
    for stage in _chain(stages[target], stages):
        for keyword, rest in stage.instructions:
            if keyword == "RUN":
                words = set(shlex.split(rest.replace("&&", " ").replace(";", " ")))
                installs = words & BUILD_TOOLS if {"apt-get", "apt", "apk", "yum", "dnf"} & words else set()
                assert not installs, f"{target} (stage {stage.name}) installs build tools {sorted(installs)}"
            if keyword == "COPY" and "--from=" in rest:
                # Only the finished virtualenv crosses from the build stages.
                assert re.search(r"--from=\S+\s+/opt/venv\s+/opt/venv$", rest), f"{target}: COPY {rest}"


def test_the_checker_sees_a_root_user_and_a_floating_tag(tmp_path: Path) -> None:
    global_args, stages = parse(
        "ARG BASE=python:3.11-slim\nFROM ${BASE} AS operator\nRUN apt-get update \\\n && apt-get install -y gcc\nUSER root\n"
    )
    [stage] = stages
    assert not PINNED_IMAGE.match(_resolve(stage.base, global_args))
    assert ("USER", "root") in stage.instructions
    assert any("gcc" in rest for keyword, rest in stage.instructions if keyword == "RUN")


def test_dockerignore_keeps_the_context_small() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    # Allow-list: everything excluded first, then only what the wheel needs.
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "requirements/*.txt", "README.md", "tensorone", "trainer", "operator"}


def _extra(name: str) -> list[str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    requirements: list[str] = pyproject["project"]["optional-dependencies"][name]
    return requirements


def test_operator_extra_holds_no_torch() -> None:
    assert not [req for req in _extra("operator") if re.match(r"(torch|transformers|peft)\b", req)]


@pytest.mark.parametrize(
    ("stage", "lock"),
    [
        ("wheel", "build.txt"),
        ("operator-venv", "operator.txt"),
        ("gateway-venv", "gateway.txt"),
        ("trainer-venv", "trainer.txt"),
    ],
)
def test_images_install_only_their_lock_and_the_project_wheel(
    dockerfile: tuple[dict[str, str], dict[str, Stage]], stage: str, lock: str
) -> None:
    """Every package at its locked version and hash (the trainer's torch is PyPI's CUDA build,
    locked with its nvidia-* libraries); nothing is resolved while the image builds."""
    _, stages = dockerfile
    copies = [rest for keyword, rest in stages[stage].instructions if keyword == "COPY"]
    assert any(rest.split()[0] == f"requirements/{lock}" for rest in copies), copies
    runs = " && ".join(rest for keyword, rest in stages[stage].instructions if keyword == "RUN")
    installs = [shlex.split(command) for command in runs.split("&&") if re.search(r"\bpip (install|wheel)\b", command)]
    assert installs
    for words in installs:
        assert "--no-deps" in words, words
        if "install" in words and "--require-hashes" not in words:
            assert words[-1] == "/wheels/*.whl", f"{stage}: {words} installs something unlocked"
    assert any("--require-hashes" in words and "-r" in words for words in installs)
    if stage == "wheel":
        assert any("wheel" in words and "--no-build-isolation" in words for words in installs)


def _final_user(target: str, stages: dict[str, Stage]) -> int:
    users = [
        rest
        for stage in reversed(_chain(stages[target], stages))
        for keyword, rest in stage.instructions
        if keyword == "USER"
    ]
    return int(users[-1].partition(":")[0])


def test_pods_run_as_the_images_users(dockerfile: tuple[dict[str, str], dict[str, Stage]]) -> None:
    """The chart's operator pod and the operator's training pods use the uid the images were built
    for, so files the image owns (the trainer's home, its cache) are writable."""
    _, stages = dockerfile
    values = yaml.safe_load((REPO_ROOT / "charts" / "tensorone-training-operator" / "values.yaml").read_text())
    assert values["runAsUser"] == _final_user("operator", stages)
    builders = pytest.importorskip("tensorone_operator.builders", reason="the operator's builders do not exist yet")
    from tensorone_operator.config import OperatorConfig

    from tensorone.api.v1alpha1 import Dataset, TrainingJob
    from tests.chart.test_pod_security import DATASETS, TRAINING_JOBS

    job = TRAINING_JOBS[0]
    dataset = Dataset.model_validate(DATASETS[job["spec"]["datasetId"]])
    template = builders.build_pod_template(TrainingJob.model_validate(job), dataset, OperatorConfig())
    assert template["spec"]["securityContext"]["runAsUser"] == _final_user("trainer", stages)


def test_the_trainers_home_is_where_its_pods_mount_a_writable_folder(
    dockerfile: tuple[dict[str, str], dict[str, Stage]],
) -> None:
    """The training pods' root filesystem is read-only: HOME (and HF_HOME under it) must be the
    folder the operator mounts an emptyDir at."""
    _, stages = dockerfile
    envs = [
        shlex.split(rest)
        for stage in reversed(_chain(stages["trainer"], stages))
        for keyword, rest in stage.instructions
        if keyword == "ENV"
    ]
    env = dict(word.split("=", 1) for words in envs for word in words if "=" in word)
    from tensorone_operator.builders import TRAINER_HOME

    assert env["HOME"] == TRAINER_HOME and env["HF_HOME"].startswith(TRAINER_HOME + "/")
