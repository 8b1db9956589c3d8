{{- define "tci.fullname" -}}{{ .Release.Name }}-tci{{- end -}}
{{- define "tci.secretName" -}}{{ default (printf "%s-secrets" (include "tci.fullname" .)) .Values.secrets.existingSecret }}{{- end -}}
{{- define "tci.labels" -}}
app.kubernetes.io/part-of: twitch-chat-ingestor
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
