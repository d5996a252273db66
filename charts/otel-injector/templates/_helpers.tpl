{{/* Object names: "otel-injector", as in manifests/. */}}
{{- define "otel-injector.fullname" -}}
{{- default "otel-injector" .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The selector label (never change it: Deployment selectors are immutable). */}}
{{- define "otel-injector.selectorLabels" -}}
app.kubernetes.io/name: otel-injector
{{- end -}}

{{/* Labels on every object: the selector label plus helm's own. */}}
{{- define "otel-injector.labels" -}}
{{ include "otel-injector.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
