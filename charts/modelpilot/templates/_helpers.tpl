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

{{/* The Lease the replicas elect their leader with. */}}
{{- define "modelpilot.leaseName" -}}
{{- default (include "modelpilot.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* The name of the leader election's Role and RoleBinding (release namespace). */}}
{{- define "modelpilot.leaderElectionName" -}}
{{- printf "%s-leader-election" (include "modelpilot.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
What values.schema.json cannot say: refused with `fail`, naming the values. Numbers
are compared as float64: values.yaml gives floats, --set integers.
*/}}
{{- define "modelpilot.validate" -}}
{{- $election := .Values.leaderElection -}}
{{- if and (gt (int .Values.replicas) 1) (not $election.enabled) -}}
{{- fail (printf "replicas is %d but leaderElection.enabled is false: more than one operator without leader election would fight over every model's route; set leaderElection.enabled=true or replicas=1" (int .Values.replicas)) -}}
{{- end -}}
{{- if $election.enabled -}}
{{- if not (lt (float64 $election.renewDeadline) (float64 $election.leaseDuration)) -}}
{{- fail (printf "leaderElection.renewDeadline (%d) must be less than leaderElection.leaseDuration (%d): the leader must stop acting before a standby may take the Lease" (int $election.renewDeadline) (int $election.leaseDuration)) -}}
{{- end -}}
{{- if not (lt (float64 $election.retryPeriod) (float64 $election.renewDeadline)) -}}
{{- fail (printf "leaderElection.retryPeriod (%d) must be less than leaderElection.renewDeadline (%d): the leader must get to retry a renewal before its deadline" (int $election.retryPeriod) (int $election.renewDeadline)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The default affinity: replicas on different nodes when the scheduler can. */}}
{{- define "modelpilot.defaultAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "modelpilot.selectorLabels" . | nindent 12 }}
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
# ManagedModels: read and watched (kopf); patched to remove a command annotation once
# it is consumed, and the finalizer operators before leader election put on models.
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
