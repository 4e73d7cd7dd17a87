{{/* vim: set filetype=mustache: */}}
{{/*
Names, labels and the RBAC rules of the chart, defined once.
*/}}

{{/*
Expand the name of the chart.
*/}}
{{- define "jeffrey-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Create a default fully qualified app name (63 characters at most: DNS label limit).
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "jeffrey-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The namespace of the release.
*/}}
{{- define "jeffrey-operator.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "jeffrey-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The version label: the image tag (or appVersion) without a digest, as a valid label value.
*/}}
{{- define "jeffrey-operator.versionLabel" -}}
{{- regexReplaceAll "[^a-zA-Z0-9-_.]+" (default .Chart.AppVersion .Values.image.tag) "" | trunc 63 | quote -}}
{{- end -}}

{{/*
Labels shared by every object, whatever its component.
*/}}
{{- define "jeffrey-operator.commonLabels" -}}
helm.sh/chart: {{ include "jeffrey-operator.chart" . }}
app.kubernetes.io/version: {{ include "jeffrey-operator.versionLabel" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jeffrey-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Standard labels of the operator's objects. Call with the root context.
*/}}
{{- define "jeffrey-operator.labels" -}}
{{ include "jeffrey-operator.selectorLabels" . }}
{{ include "jeffrey-operator.commonLabels" . }}
{{- end -}}

{{/*
Selector labels of the operator pods.
*/}}
{{- define "jeffrey-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jeffrey-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
Labels and selector labels of the built-in Redis.
*/}}
{{- define "jeffrey-operator.redis.labels" -}}
{{ include "jeffrey-operator.redis.selectorLabels" . }}
{{ include "jeffrey-operator.commonLabels" . }}
{{- end -}}

{{- define "jeffrey-operator.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jeffrey-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{/*
The ServiceAccount name.
*/}}
{{- define "jeffrey-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jeffrey-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The operator image reference (a digest wins over the tag).
*/}}
{{- define "jeffrey-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the operator watches all namespaces (empty watchNamespaces).
*/}}
{{- define "jeffrey-operator.clusterWide" -}}
{{- if empty .Values.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/*
The peering object's name.
*/}}
{{- define "jeffrey-operator.peeringName" -}}
{{- default (include "jeffrey-operator.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/*
Redis: on when enabled or built in.
*/}}
{{- define "jeffrey-operator.redis.enabled" -}}
{{- if or .Values.redis.enabled .Values.redis.builtin.enabled -}}true{{- end -}}
{{- end -}}

{{/*
Name of the Secret holding the Redis password (and URL).
*/}}
{{- define "jeffrey-operator.redis.secretName" -}}
{{- default (printf "%s-redis" (include "jeffrey-operator.fullname" .)) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{/*
Key of the password in that Secret.
*/}}
{{- define "jeffrey-operator.redis.passwordKey" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecretPasswordKey -}}
{{- else -}}
redis-password
{{- end -}}
{{- end -}}

{{/*
Name of the built-in Redis Deployment and Service.
*/}}
{{- define "jeffrey-operator.redis.builtinName" -}}
{{- printf "%s-redis" (include "jeffrey-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The Redis URL the chart writes into its own Secret.
*/}}
{{- define "jeffrey-operator.redis.url" -}}
{{- if .Values.redis.builtin.enabled -}}
{{- printf "redis://%s.%s.svc:%d/0" (include "jeffrey-operator.redis.builtinName" .) (include "jeffrey-operator.namespace" .) (int .Values.redis.builtin.port) -}}
{{- else -}}
{{- .Values.redis.url -}}
{{- end -}}
{{- end -}}

{{/*
Checks the schema cannot express; fail with a message that says what to change.
*/}}
{{- define "jeffrey-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) -}}
{{- fail (printf "replicaCount is %d but peering.enabled is false: several replicas without kopf peering would all act at once. Set peering.enabled=true or replicaCount=1." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and (include "jeffrey-operator.redis.enabled" .) (not .Values.redis.builtin.enabled) (not .Values.redis.url) (not .Values.redis.auth.existingSecretUrlKey) -}}
{{- fail "redis.enabled is true but no Redis URL is set: set redis.url, or redis.auth.existingSecret with redis.auth.existingSecretUrlKey, or redis.builtin.enabled=true." -}}
{{- end -}}
{{- if contains "@" .Values.redis.url -}}
{{- fail "redis.url must not contain credentials: give the URL without user:password@ and put the password in a Secret (redis.auth.password or redis.auth.existingSecret)." -}}
{{- end -}}
{{- if and .Values.redis.auth.existingSecretUrlKey (not .Values.redis.auth.existingSecret) -}}
{{- fail "redis.auth.existingSecretUrlKey needs redis.auth.existingSecret (the Secret it is read from)." -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled=true (the ServiceMonitor selects that Service)." -}}
{{- end -}}
{{- end -}}

{{/*
RBAC rules for the namespaced resources, written once: rendered into the ClusterRole when the
operator watches all namespaces, into a Role in each watched namespace otherwise.
Each rule says who needs it: "kopf" (the framework itself) or "operator" (our logic).
*/}}
{{- define "jeffrey-operator.rbac.namespacedRules" -}}
# kopf: list/watch stream the JeffreyIntegrations; patch stores kopf's progress annotations and
# finalizer. operator: get/patch/update write the retry bookkeeping on the object.
- apiGroups: ["jeffreyos.io"]
  resources: ["jeffreyintegrations"]
  verbs: ["get", "list", "watch", "patch", "update"]
# operator: status is where the engine keeps its level, phase, gates and transitions.
- apiGroups: ["jeffreyos.io"]
  resources: ["jeffreyintegrations/status"]
  verbs: ["get", "patch", "update"]
# operator: observe the module Deployments (readiness) and set their replicas.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
# operator: scale module Deployments through the scale subresource.
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "patch", "update"]
# kopf: posts core/v1 Events for handler outcomes. operator: an Event on every transition.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# operator: Events through the events.k8s.io/v1 API.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# operator: level checks (spec.checks) run as Jobs: create one per run, watch them (found by
# their labels after a restart), delete superseded Jobs and those beyond the history.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
{{- if .Values.rbac.readSecrets }}
# operator: read Prometheus bearer tokens / basic auth a JeffreyIntegration refers to.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- if and .Values.peering.enabled (not (include "jeffrey-operator.clusterWide" .)) }}
# kopf: namespaced peering (one active replica) through the KopfPeering in this namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}

{{/*
RBAC rules for cluster-scoped resources kopf needs in every mode.
*/}}
{{- define "jeffrey-operator.rbac.clusterRules" -}}
# kopf: discovers the served resources and re-scans when CustomResourceDefinitions change.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if include "jeffrey-operator.clusterWide" . }}
# kopf: follows namespaces in cluster-wide mode.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- if .Values.peering.enabled }}
# kopf: cluster-wide peering (one active replica) through the ClusterKopfPeering.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
{{- end -}}
