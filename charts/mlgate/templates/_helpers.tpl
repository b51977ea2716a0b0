{{/* Names, labels and the pieces several templates share. */}}

{{- define "mlgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mlgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlgate.labels" -}}
helm.sh/chart: {{ include "mlgate.chart" . }}
{{ include "mlgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: admission-webhook
{{- end }}

{{- define "mlgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding tls.crt / tls.key (chart-generated or made by cert-manager). */}}
{{- define "mlgate.tlsSecretName" -}}
{{- printf "%s-tls" (include "mlgate.fullname" .) }}
{{- end }}

{{- define "mlgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Names of the webhook configurations (cluster-scoped, so they carry the namespace). */}}
{{- define "mlgate.webhookConfigurationName" -}}
{{- printf "%s-%s" (include "mlgate.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The settings both webhooks share: namespaces left out (the release namespace, kube-system,
the extra ones, and any namespace carrying the opt-out label), object selector, and
matchConditions that skip objects being deleted (a finalizer removal must never be blocked).
*/}}
{{- define "mlgate.webhookCommon" -}}
admissionReviewVersions: ["v1"]
sideEffects: None
timeoutSeconds: {{ .Values.webhooks.timeoutSeconds }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- range (concat (list .Release.Namespace "kube-system") .Values.webhooks.excludedNamespaces | uniq) }}
        - {{ . | quote }}
        {{- end }}
    - key: {{ .Values.webhooks.optOutLabel | quote }}
      operator: DoesNotExist
{{- with .Values.webhooks.objectSelector }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
matchConditions:
  - name: not-being-deleted
    expression: "!has(object.metadata.deletionTimestamp)"
  {{- with .Values.webhooks.extraMatchConditions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{- define "mlgate.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "mlgate.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: {{ .root.Values.service.port }}
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
{{- end }}

{{/*
Worker processes per pod: server.workers when set, else one per CPU of the container's CPU
limit (rounded up), else 1. Each worker is a process with its own event loop, so more
workers than CPUs only add memory.
*/}}
{{- define "mlgate.workers" -}}
{{- if .Values.server.workers -}}
{{- .Values.server.workers -}}
{{- else -}}
{{- $cpu := toString (dig "limits" "cpu" "" (.Values.resources | default dict)) -}}
{{- if not $cpu -}}
1
{{- else if hasSuffix "m" $cpu -}}
{{- max 1 (div (add (trimSuffix "m" $cpu | atoi) 999) 1000) -}}
{{- else -}}
{{- max 1 (int (ceil (float64 $cpu))) -}}
{{- end -}}
{{- end -}}
{{- end }}
