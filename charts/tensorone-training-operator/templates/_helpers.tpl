{{/* Names, labels and the pieces several templates share. */}}

{{- define "tensorone.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tensorone.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "tensorone.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else if hasPrefix (printf "%s-" .Release.Name) (include "tensorone.name" .) }}
{{- /* Release "tensorone" names objects tensorone-training-operator, not tensorone-tensorone-... */}}
{{- include "tensorone.name" . }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "tensorone.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels of every object the chart renders, without a component. */}}
{{- define "tensorone.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "tensorone.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tensorone-training
{{- end }}

{{/* Labels of the operator's own objects. */}}
{{- define "tensorone.labels" -}}
{{ include "tensorone.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tensorone.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tensorone.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tensorone.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tensorone.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is set, else repository:tag (tag defaults to appVersion). */}}
{{- define "tensorone.imageRef" -}}
{{- $image := index . 0 -}}
{{- $appVersion := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $appVersion $image.tag) -}}
{{- end -}}
{{- end }}

{{/* Namespaces where training pods run and so need the training ServiceAccount. */}}
{{- define "tensorone.trainingNamespaces" -}}
{{- $namespaces := list .Release.Namespace -}}
{{- range (concat .Values.watchNamespaces .Values.trainingServiceAccount.namespaces) -}}
{{- $namespaces = append $namespaces . -}}
{{- end -}}
{{- toJson (uniq $namespaces) -}}
{{- end }}

{{/* The operator's config file (OperatorConfig, camelCase). */}}
{{- define "tensorone.operatorConfig" -}}
{{- $config := deepCopy .Values.operatorConfig -}}
{{- $_ := set $config "trainerImage" (include "tensorone.imageRef" (list .Values.trainer.image .Chart.AppVersion)) -}}
{{- $_ = set $config "trainerImagePullPolicy" .Values.trainer.image.pullPolicy -}}
{{- $_ = set $config "trainingServiceAccount" .Values.trainingServiceAccount.name -}}
{{- $_ = set $config "priorityClasses" (dict "high" .Values.priorityClasses.high.name "normal" .Values.priorityClasses.normal.name "low" .Values.priorityClasses.low.name) -}}
{{- toYaml $config -}}
{{- end }}

{{/*
The operator's rules: exactly the API calls of tensorone_operator.access (its own client's calls,
kopf's watches, patches and Events, and what admission asks of its creates), checked against that
list in both modes by tests/chart/test_rbac.py. Namespaced rules are shared by the cluster-wide
ClusterRole and the per-namespace Roles.
*/}}
{{/*
The child kinds in use (JSON list): the operator's backend and those of its namespace exceptions.
*/}}
{{- define "tensorone.backends" -}}
{{- $backends := list .Values.operatorConfig.backend }}
{{- range $_, $backend := .Values.operatorConfig.namespaceBackends }}
{{- $backends = append $backends $backend }}
{{- end }}
{{- $backends | uniq | toJson }}
{{- end }}

{{- define "tensorone.namespacedRules" -}}
# kopf watches jobs and patches its finalizer and annotations on them; the operator reads a job.
- apiGroups: [training.tensorone.ai]
  resources: [trainingjobs]
  verbs: [get, list, watch, patch]
- apiGroups: [training.tensorone.ai]
  resources: [datasets]
  verbs: [get, list, watch]
- apiGroups: [training.tensorone.ai]
  resources: [trainingjobs/status, datasets/status]
  verbs: [patch]
# Children carry an ownerReference with blockOwnerDeletion, which admission allows only to whoever
# may update the owner's finalizers.
- apiGroups: [training.tensorone.ai]
  resources: [trainingjobs/finalizers]
  verbs: [update]
{{- $backends := include "tensorone.backends" . | fromJsonArray }}
{{- if has "pytorchjob" $backends }}
- apiGroups: [kubeflow.org]
  resources: [pytorchjobs]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
{{- if has "trainjob" $backends }}
- apiGroups: [trainer.kubeflow.org]
  resources: [trainjobs]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
# Kueue's Workload of a queued job's child (admission, preemption; deactivated while stopped) and
# the job's position in its LocalQueue from Kueue's visibility API.
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [list, patch]
- apiGroups: [visibility.kueue.x-k8s.io]
  resources: [localqueues/pendingworkloads]
  verbs: [get]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, create, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/*
Cluster-scoped rules every mode needs: kopf follows the CRDs of its resources; with the GPU check,
kopf indexes GPU nodes, and a namespaced operator also lists them itself.
*/}}
{{- define "tensorone.clusterScopedRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if .Values.operatorConfig.checkGpuNodes }}
- apiGroups: [""]
  resources: [nodes]
  verbs: [list, watch]
{{- end }}
{{- end }}

{{/* Labels the operator puts on every training pod it creates. */}}
{{- define "tensorone.trainingPodLabels" -}}
app.kubernetes.io/name: tensorone-training
app.kubernetes.io/managed-by: tensorone-operator
{{- end }}

{{/* A CEL string literal; the values schema admits no quote or backslash in what is quoted here. */}}
{{- define "tensorone.celString" -}}
{{- printf "'%s'" . -}}
{{- end }}

{{/* A CEL list of string literals. */}}
{{- define "tensorone.celStrings" -}}
{{- $literals := list -}}
{{- range . -}}
{{- $literals = append $literals (include "tensorone.celString" .) -}}
{{- end -}}
{{- printf "[%s]" (join ", " $literals) -}}
{{- end }}

{{/* A CEL map from namespace to its allowed priorities: lists, or with "text" one string each. */}}
{{- define "tensorone.celPriorityMap" -}}
{{- $entries := list -}}
{{- range $namespace, $allowed := .byNamespace -}}
{{- $value := ternary (include "tensorone.celString" (join ", " $allowed)) (include "tensorone.celStrings" $allowed) $.text -}}
{{- $entries = append $entries (printf "%s: %s" (include "tensorone.celString" $namespace) $value) -}}
{{- end -}}
{{- printf "{%s}" (join ", " $entries) -}}
{{- end }}
