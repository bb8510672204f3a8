{{/* Names and labels shared by every object of a release. */}}
{{- define "switchboard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "switchboard.labels" -}}
{{ include "switchboard.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "switchboard.secretName" -}}
{{- default (include "switchboard.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The embedded engine is one node with a volume; Redis forms scale out. */}}
{{- define "switchboard.embedded" -}}
{{- if eq .Values.redis.mode "none" }}true{{ end -}}
{{- end -}}

{{- define "switchboard.validate" -}}
{{- $modes := list "single" "sentinel" "cluster" "none" -}}
{{- if not (has .Values.redis.mode $modes) -}}
{{- fail (printf "redis.mode must be one of %s, not %q" (join ", " $modes) .Values.redis.mode) -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "sentinel") (not .Values.redis.sentinels) -}}
{{- fail "redis.mode=sentinel needs redis.sentinels (host:port,host:port,...)" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "sentinel") (not .Values.redis.masterName) -}}
{{- fail "redis.mode=sentinel needs redis.masterName (the name the Sentinels monitor the master by)" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "cluster") (not .Values.redis.nodes) -}}
{{- fail "redis.mode=cluster needs redis.nodes (seed node URLs)" -}}
{{- end -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.masterKey) (ne .Values.redis.mode "none") -}}
{{- fail "set secrets.existingSecret (recommended) or secrets.masterKey: every node must share one master key" -}}
{{- end -}}
{{- end -}}
