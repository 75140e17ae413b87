{{/* The chart's names: RELEASE-semantic, and its components. */}}
{{- define "semantic.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "semantic.pool" -}}{{ include "semantic.fullname" . }}-pool{{- end -}}
{{- define "semantic.scheduler" -}}{{ include "semantic.fullname" . }}-scheduler{{- end -}}

{{- define "semantic.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "semantic.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The environment every semantic binary reads (flags are SEMANTIC_* variables). */}}
{{- define "semantic.commonEnv" -}}
- name: SEMANTIC_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: SEMANTIC_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: SEMANTIC_DATA_DIR
  value: /data
{{- end -}}
