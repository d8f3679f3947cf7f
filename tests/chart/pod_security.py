"""The Kubernetes Pod Security Standards "restricted" profile, as checks over a plain pod spec.

Written from the published standard (baseline plus restricted controls, policy version latest), so
the chart's Deployment and the operator's PyTorchJob pod template can be checked without an API
server. Each violation names the field path and what the profile allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Restricted: only these volume types (hostPath, nfs, iscsi, ... are refused).
ALLOWED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# Baseline: sysctls that are namespaced and safe.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
ALLOWED_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
ALLOWED_SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
# Volume keys that are not the volume's type.
_VOLUME_META_KEYS = frozenset({"name"})
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _containers(pod_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for list_name in _CONTAINER_LISTS:
        for index, container in enumerate(pod_spec.get(list_name) or []):
            yield f"spec.{list_name}[{index}]", container


def restricted_violations(pod_spec: dict[str, Any], annotations: dict[str, str] | None = None) -> list[str]:
    """Every way ``pod_spec`` breaks the restricted profile (empty when it complies)."""
    pod_context: dict[str, Any] = pod_spec.get("securityContext") or {}
    problems = _host_problems(pod_spec) + _pod_baseline_problems(pod_context, annotations or {})
    problems += _pod_restricted_problems(pod_context)
    for path, container in _containers(pod_spec):
        problems += _container_problems(path, container, pod_context)
    return problems


def _host_problems(pod_spec: dict[str, Any]) -> list[str]:
    """Baseline: host namespaces and host paths."""
    problems = [
        f"spec.{flag} must be false or unset" for flag in ("hostNetwork", "hostPID", "hostIPC") if pod_spec.get(flag)
    ]
    for index, volume in enumerate(pod_spec.get("volumes") or []):
        kinds = set(volume) - _VOLUME_META_KEYS
        for kind in sorted(kinds - ALLOWED_VOLUME_TYPES):
            problems.append(
                f"spec.volumes[{index}] ({volume.get('name')}) is a {kind} volume; allowed types: "
                f"{', '.join(sorted(ALLOWED_VOLUME_TYPES))}"
            )
    return problems


def _pod_baseline_problems(pod_context: dict[str, Any], annotations: dict[str, str]) -> list[str]:
    """Baseline: sysctls, SELinux, AppArmor, host processes (pod level)."""
    problems = [
        f"spec.securityContext.sysctls: {sysctl.get('name')} is not a safe sysctl"
        for sysctl in pod_context.get("sysctls") or []
        if sysctl.get("name") not in SAFE_SYSCTLS
    ]
    problems += _selinux_problems("spec.securityContext", pod_context)
    problems += _apparmor_problems("spec.securityContext", pod_context)
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            problems.append(f"annotation {key}={value}: AppArmor must be runtime/default or localhost/*")
    if (pod_context.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("spec.securityContext.windowsOptions.hostProcess must be false or unset")
    return problems


def _pod_restricted_problems(pod_context: dict[str, Any]) -> list[str]:
    """Restricted, pod level: seccomp and user, which containers may override or must inherit."""
    problems: list[str] = []
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP_TYPES:
        problems.append(
            f"spec.securityContext.seccompProfile.type is {pod_seccomp}; allowed: RuntimeDefault, Localhost"
        )
    if pod_context.get("runAsUser") == 0:
        problems.append("spec.securityContext.runAsUser must not be 0 (root)")
    if pod_context.get("runAsNonRoot") is False:
        problems.append("spec.securityContext.runAsNonRoot must not be false")
    return problems


def _container_problems(path: str, container: dict[str, Any], pod_context: dict[str, Any]) -> list[str]:
    return _container_baseline_problems(path, container) + _container_restricted_problems(path, container, pod_context)


def _container_baseline_problems(path: str, container: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    context: dict[str, Any] = container.get("securityContext") or {}
    where = f"{path}.securityContext"
    name = container.get("name", "?")

    if context.get("privileged"):
        problems.append(f"{where}.privileged must be false or unset (container {name})")
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        problems.append(f"{where}.windowsOptions.hostProcess must be false or unset (container {name})")
    if context.get("procMount") not in (None, "Default"):
        problems.append(f"{where}.procMount must be Default or unset (container {name})")
    for index, port in enumerate(container.get("ports") or []):
        if port.get("hostPort"):
            problems.append(f"{path}.ports[{index}].hostPort must be 0 or unset (container {name})")
    problems += _selinux_problems(where, context)
    problems += _apparmor_problems(where, context)
    return problems


def _container_restricted_problems(path: str, container: dict[str, Any], pod_context: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    context: dict[str, Any] = container.get("securityContext") or {}
    where = f"{path}.securityContext"
    name = container.get("name", "?")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}.allowPrivilegeEscalation must be false (container {name})")
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append(f"{where}.capabilities.drop must include ALL (container {name})")
    for added in capabilities.get("add") or []:
        if added != "NET_BIND_SERVICE":
            problems.append(f"{where}.capabilities.add may only hold NET_BIND_SERVICE, not {added} (container {name})")

    run_as_non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
    if run_as_non_root is not True:
        problems.append(f"{where}.runAsNonRoot (or the pod's) must be true (container {name})")
    if context.get("runAsUser") == 0:
        problems.append(f"{where}.runAsUser must not be 0 (container {name})")
    seccomp = (context.get("seccompProfile") or {}).get("type") or (pod_context.get("seccompProfile") or {}).get("type")
    if seccomp not in ALLOWED_SECCOMP_TYPES:
        problems.append(
            f"{where}.seccompProfile.type (or the pod's) must be RuntimeDefault or Localhost, "
            f"not {seccomp or 'unset'} (container {name})"
        )
    return problems


def _selinux_problems(where: str, context: dict[str, Any]) -> list[str]:
    options = context.get("seLinuxOptions") or {}
    problems = []
    if options.get("type", "") not in ALLOWED_SELINUX_TYPES:
        problems.append(f"{where}.seLinuxOptions.type {options['type']} is not allowed")
    for key in ("user", "role"):
        if options.get(key):
            problems.append(f"{where}.seLinuxOptions.{key} must be unset")
    return problems


def _apparmor_problems(where: str, context: dict[str, Any]) -> list[str]:
    profile = (context.get("appArmorProfile") or {}).get("type")
    if profile is not None and profile not in ALLOWED_APPARMOR_TYPES:
        return [f"{where}.appArmorProfile.type is {profile}; allowed: RuntimeDefault, Localhost"]
    return []


def pod_specs(manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, str]]]:
    """(where, pod spec, pod annotations) of every pod a manifest creates: workloads and PyTorchJobs."""
    kind = manifest.get("kind")
    name = (manifest.get("metadata") or {}).get("name")
    spec = manifest.get("spec") or {}
    if kind == "Pod":
        yield f"Pod/{name}", spec, (manifest.get("metadata") or {}).get("annotations") or {}
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        template = spec.get("template") or {}
        yield f"{kind}/{name}", template.get("spec") or {}, (template.get("metadata") or {}).get("annotations") or {}
    elif kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        yield f"CronJob/{name}", template.get("spec") or {}, (template.get("metadata") or {}).get("annotations") or {}
    elif kind == "PyTorchJob":
        for replica, replica_spec in (spec.get("pytorchReplicaSpecs") or {}).items():
            template = replica_spec.get("template") or {}
            yield (
                f"PyTorchJob/{name} {replica}",
                template.get("spec") or {},
                (template.get("metadata") or {}).get("annotations") or {},
            )
