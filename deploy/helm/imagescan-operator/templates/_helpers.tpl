{{/*
Object names are fixed, not derived from the release name: the ClusterRoles, the webhook configuration and the
CRDs are cluster-wide and the operator handles every namespace, so one release per cluster is the only sane
set-up, and fixed names are the ones deploy/ (Kustomize) uses, which the install test compares with.
*/}}

{{- define "imagescan.labels" -}}
app.kubernetes.io/name: imagescan-operator
app.kubernetes.io/part-of: imagescan
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "imagescan.selector" -}}
app.kubernetes.io/name: imagescan-operator
{{- end }}

{{- define "imagescan.args" -}}
{{- if .Values.watchNamespaces }}
{{- range .Values.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
- --http-port=8080
- --log-format={{ .Values.logFormat }}
{{- if .Values.leaderElection.enabled }}
- --leader-election
{{- end }}
{{- with .Values.tick }}
- --tick={{ . }}
{{- end }}
{{- with .Values.workers }}
- --workers={{ . }}
{{- end }}
{{- if .Values.webhook.enabled }}
- --webhook-port=9443
- --webhook-cert=/certs/tls.crt
- --webhook-key=/certs/tls.key
{{- end }}
{{- with .Values.events.queueUrl }}
- --events-queue-url={{ . }}
{{- /* Only with a queue: without one the operator has no use for either. */}}
- --events-safety-net={{ $.Values.events.safetyNet }}
{{- with $.Values.events.sqsEndpointUrl }}
- --sqs-endpoint-url={{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "imagescan.webhookSecret" -}}
{{- if .Values.webhook.certManager.enabled }}imagescan-webhook-tls{{ else }}{{ required "webhook.existingSecret is required when webhook.certManager.enabled is false" .Values.webhook.existingSecret }}{{ end }}
{{- end }}

{{/* What values.schema.json cannot say: rules across values. */}}
{{- define "imagescan.checks" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without it every replica would reconcile every object" }}
{{- end }}
{{- /* The schema checks the form; the operator exits at start-up outside 1m..168h, which would leave every new
pod crash-looping, so the bound is checked here too (seconds, as imagepipeline.parse_duration adds them up). */}}
{{- $seconds := 0.0 }}
{{- range regexFindAll "[0-9.]+(ms|s|m|h)" .Values.events.safetyNet -1 }}
{{- $unit := regexFind "(ms|s|m|h)$" . }}
{{- $seconds = addf $seconds (mulf (trimSuffix $unit .) (get (dict "ms" 0.001 "s" 1 "m" 60 "h" 3600) $unit)) }}
{{- end }}
{{- if or (lt $seconds 60.0) (gt $seconds 604800.0) }}
{{- fail (printf "events.safetyNet %s is outside 1m..168h" .Values.events.safetyNet) }}
{{- end }}
{{- end }}

{{/* The webhook's clientConfig (both webhooks): the Service, and the CA unless cert-manager injects it. */}}
{{- define "imagescan.clientConfig" }}
    clientConfig:
      service:
        name: imagescan-webhook
        namespace: {{ .Release.Namespace }}
        path: /validate
        port: 443
      {{- if not .Values.webhook.certManager.enabled }}
      caBundle: {{ required "webhook.caBundle (base64 PEM of the CA of webhook.existingSecret) is required without cert-manager" .Values.webhook.caBundle }}
      {{- end }}
{{- end }}
