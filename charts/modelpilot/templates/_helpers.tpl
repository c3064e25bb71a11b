{{/* The release's full name: the release name alone when it already says modelpilot. */}}
{{- define "modelpilot.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of the cluster-scoped, read-only ClusterRole and its binding. */}}
{{- define "modelpilot.clusterReaderName" -}}
{{- printf "%s-cluster-reader" (include "modelpilot.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelpilot.serviceAccountName" -}}
{{- default (include "modelpilot.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The operator's ServiceAccount as an RBAC subject. */}}
{{- define "modelpilot.subjects" -}}
- kind: ServiceAccount
  name: {{ include "modelpilot.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{- define "modelpilot.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelpilot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "modelpilot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "modelpilot.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
What the operator does in the namespaces it manages: rendered into one ClusterRole
(every namespace) or into a Role per entry of watchNamespaces.
*/}}
{{- define "modelpilot.namespacedRules" -}}
# ManagedModels: read and watched (kopf); patched for kopf's finalizer and state
# annotations and to remove a command annotation once it is consumed.
- apiGroups: [modelpilot.io]
  resources: [managedmodels]
  verbs: [get, list, watch, patch]
# The status subresource: phase, weights, conditions, history.
- apiGroups: [modelpilot.io]
  resources: [managedmodels/status]
  verbs: [patch]
# Children carry blockOwnerDeletion owner references; clusters that enable the
# OwnerReferencesPermissionEnforcement admission plugin require this to set them.
- apiGroups: [modelpilot.io]
  resources: [managedmodels/finalizers]
  verbs: [update]
# One InferenceService per version: server-side applied (a PATCH, which needs create
# too when the object is new), watched to wake the model, deleted when its version
# leaves spec.versions.
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [get, list, watch, create, patch, delete]
# One autoscaling/v2 HPA per version, the same way.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
# The model's one weighted HTTPRoute: server-side applied and watched (the garbage
# collector deletes it with the model, so no delete).
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch]
# A shadow's mirroring TraefikService (--gateway-flavor traefik only): read fresh, not
# watched, server-side applied, deleted once the route no longer names it.
- apiGroups: [traefik.io]
  resources: [traefikservices]
  verbs: [get, create, patch, delete]
# The namespace's ServingRuntimes, to choose a runtime the way KServe does.
- apiGroups: [serving.kserve.io]
  resources: [servingruntimes]
  verbs: [list, watch]
# KServe's predictor Deployments: readiness and rollout progress (read only).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch]
# A version's predictor pods: whether they run its current spec, why they are Pending.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# The Events `kubectl describe mm` shows.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
