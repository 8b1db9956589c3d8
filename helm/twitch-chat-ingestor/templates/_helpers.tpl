{{/* The chart name, or nameOverride. */}}
{{- define "tci.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<name>, or just <release> when it already contains <name>, or fullnameOverride. */}}
{{- define "tci.fullname" -}}
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

{{/* The name of one component's objects: (dict "root" $ "component" "chat-api"). */}}
{{- define "tci.componentName" -}}
{{- printf "%s-%s" (include "tci.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tci.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "tci.labels" -}}
helm.sh/chart: {{ include "tci.chart" . }}
{{ include "tci.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: twitch-chat-ingestor
{{- end -}}

{{- define "tci.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tci.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels and selector of one component: (dict "root" $ "component" "chat-api"). */}}
{{- define "tci.componentLabels" -}}
{{ include "tci.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}
{{- define "tci.componentSelector" -}}
{{ include "tci.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tci.secretName" -}}
{{- default (printf "%s-secrets" (include "tci.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "tci.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* What the restricted Pod Security Standard asks of a pod and of a container. */}}
{{- define "tci.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "tci.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A TOML string (JSON string escapes are valid TOML basic-string escapes). */}}
{{- define "tci.toml" -}}{{ . | toString | toJson }}{{- end -}}

{{/*
The services' configuration file (TCI_CONFIG). Secrets are not in it: they come from the Secret as
TCI__… environment variables, which override the file.
*/}}
{{- define "tci.configToml" -}}
{{- $props := deepCopy .Values.kafka.properties -}}
{{- with .Values.kafka.sasl -}}
{{- if .mechanism -}}
{{- $_ := set $props "sasl.mechanism" .mechanism -}}
{{- if not (hasKey $props "security.protocol") }}{{ $_ := set $props "security.protocol" "SASL_SSL" }}{{ end -}}
{{- end -}}
{{- if .username }}{{ $_ := set $props "sasl.username" .username }}{{ end -}}
{{- end -}}
[log]
format = "json"
filter = {{ include "tci.toml" .Values.logFilter }}

[admin]
addr = {{ include "tci.toml" (printf "0.0.0.0:%v" .Values.adminPort) }}

[kafka]
brokers = {{ include "tci.toml" .Values.kafka.brokers }}

[kafka.properties]
{{- range $k := keys $props | sortAlpha }}
{{ include "tci.toml" $k }} = {{ include "tci.toml" (get $props $k) }}
{{- end }}

[registry]
url = {{ include "tci.toml" .Values.registry.url }}

[cassandra]
nodes = [{{ range $i, $n := .Values.cassandra.nodes }}{{ if $i }}, {{ end }}{{ include "tci.toml" $n }}{{ end }}]
keyspace = {{ include "tci.toml" .Values.cassandra.keyspace }}
replication = {{ include "tci.toml" .Values.cassandra.replication }}
consistency = {{ include "tci.toml" .Values.cassandra.consistency }}
request_timeout = {{ include "tci.toml" .Values.cassandra.requestTimeout }}
{{- with .Values.cassandra.username }}
username = {{ include "tci.toml" . }}
{{- end }}

[topics]
live_streams = {{ include "tci.toml" .Values.topics.liveStreams }}
chat = {{ include "tci.toml" .Values.topics.chat }}
moderation = {{ include "tci.toml" .Values.topics.moderation }}
dead_letter = {{ include "tci.toml" .Values.topics.deadLetter }}
optouts = {{ include "tci.toml" .Values.topics.optouts }}
{{- end -}}

{{/* Pod placement shared by every Deployment: (dict "root" $ "component" "chat-api"). */}}
{{- define "tci.placement" -}}
{{- $v := .root.Values -}}
{{- with $v.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
topologySpreadConstraints:
{{- if $v.topologySpreadConstraints }}
{{- toYaml $v.topologySpreadConstraints | nindent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {{- include "tci.componentSelector" . | nindent 8 }}
{{- end }}
{{- end -}}
