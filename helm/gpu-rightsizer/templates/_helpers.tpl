{{/* Names and labels shared by every template. */}}

{{- define "gpu-rightsizer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gpu-rightsizer.fullname" -}}
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

{{- define "gpu-rightsizer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpu-rightsizer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gpu-rightsizer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gpu-rightsizer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpu-rightsizer
{{- end -}}

{{- define "gpu-rightsizer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gpu-rightsizer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gpu-rightsizer.peeringName" -}}
{{- default (include "gpu-rightsizer.fullname" .) .Values.peering.name -}}
{{- end -}}

{{- define "gpu-rightsizer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Namespaces that need `create events` besides the watched ones when the operator is namespace-
restricted: kopf posts events about cluster-scoped GPUNodePools to its own namespace (the release's,
in a pod), and node events go to "default" where the API server keeps events of cluster objects. */}}
{{- define "gpu-rightsizer.eventNamespaces" -}}
{{- $out := list -}}
{{- range (list .Release.Namespace "default") -}}
{{- if and (not (has . $.Values.namespaces)) (not (has . $out)) -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Checks that JSON Schema cannot express with a clear message. */}}
{{- define "gpu-rightsizer.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.peering.enabled) -}}
{{- fail "replicas > 1 needs peering.enabled=true: without peering every replica would act on the same workloads" -}}
{{- end -}}
{{- if and .Values.prometheus.ca.configMapName .Values.prometheus.ca.secretName -}}
{{- fail "prometheus.ca: set configMapName or secretName, not both" -}}
{{- end -}}
{{- if and (eq .Values.metricsSource "DCGM") (not .Values.dcgm.endpoints) (not .Values.dcgm.service) -}}
{{- fail "metricsSource DCGM needs dcgm.service (namespace/name of the dcgm-exporter Service) or dcgm.endpoints (its /metrics URLs)" -}}
{{- end -}}
{{- end -}}
