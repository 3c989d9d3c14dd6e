{{/* Names and labels. */}}
{{- define "driftwarden.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "driftwarden.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "driftwarden.labels" -}}
app.kubernetes.io/name: {{ include "driftwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "worker"). */}}
{{- define "driftwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "driftwarden.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "driftwarden.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if and (eq .Values.image.variant "cuda") (not (hasSuffix "-cuda" $tag)) -}}{{- $tag = printf "%s-cuda" $tag -}}{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{- define "driftwarden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "driftwarden.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "driftwarden.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-data" (include "driftwarden.fullname" .)) -}}
{{- end -}}

{{/* The secret settings, by the processes that read them (workers never see the store's,
     Grafana's or the alert receivers' secrets: core/settings.py SINK_ONLY_SETTINGS). The chart's
     tests check these lists against the settings' SecretStr fields. */}}
{{- define "driftwarden.secretsAll" -}}
DRIFTWARDEN_KAFKA_SASL_PASSWORD DRIFTWARDEN_WEB_TOKEN
{{- end -}}
{{- define "driftwarden.secretsSink" -}}
DRIFTWARDEN_CLICKHOUSE_DSN DRIFTWARDEN_GRAFANA_TOKEN DRIFTWARDEN_ALERTS__PAGERDUTY_ROUTING_KEY DRIFTWARDEN_ALERTS__SLACK_WEBHOOK_URL
{{- end -}}

{{/* The settings the chart sets itself (from its values): a `config` entry may not set them. */}}
{{- define "driftwarden.chartSettings" -}}
{{- toYaml (dict
  "DRIFTWARDEN_KAFKA_BOOTSTRAP" .Values.kafkaBootstrap
  "DRIFTWARDEN_DATA_DIR" "/var/lib/driftwarden"
  "DRIFTWARDEN_WEB_BIND" .Values.web.bind
  "DRIFTWARDEN_SINK_WEB_PORT" (toString .Values.sink.webPort)
  "DRIFTWARDEN_WORKER_WEB_PORT" (toString .Values.worker.webPort)
  "DRIFTWARDEN_OTLP__HOST" "0.0.0.0"
  "DRIFTWARDEN_OTLP__PORT" (toString .Values.otlp.port)
  "DRIFTWARDEN_RETRAIN__LAUNCHER" .Values.retrain.launcher
  "DRIFTWARDEN_RETRAIN__KUBECTL" .Values.retrain.kubectl
  "DRIFTWARDEN_RETRAIN__K8S_NAMESPACE" .Release.Namespace
  "DRIFTWARDEN_RETRAIN__K8S_IMAGE" (include "driftwarden.image" .)
  "DRIFTWARDEN_RETRAIN__K8S_DATASETS_CLAIM" (include "driftwarden.claimName" .)
  "DRIFTWARDEN_RETRAIN__K8S_SECRET" .Values.secrets.existingSecret
  "DRIFTWARDEN_RETRAIN__K8S_GPU" (ternary "true" "false" (eq .Values.image.variant "cuda"))) -}}
{{- end -}}

{{/* Refuse values that would render a secret or contradict the deployment. */}}
{{- define "driftwarden.validate" -}}
{{- if not .Values.kafkaBootstrap -}}
{{- fail "kafkaBootstrap is required: the host:port list of your Kafka brokers" -}}
{{- end -}}
{{- $secrets := splitList " " (printf "%s %s" (include "driftwarden.secretsAll" .) (include "driftwarden.secretsSink" .)) -}}
{{- $chartSet := keys (include "driftwarden.chartSettings" . | fromYaml) -}}
{{- range $name, $value := .Values.config -}}
{{- $upper := upper $name -}}
{{- range $secret := $secrets -}}
{{/* Settings read names case-insensitively, and a nested config may come whole as JSON. */}}
{{- if or (eq $upper $secret) (hasPrefix (printf "%s__" $upper) $secret) -}}
{{- fail (printf "config.%s is (or holds) a secret: put %s in the Secret named by secrets.existingSecret, never in values" $name $secret) -}}
{{- end -}}
{{- end -}}
{{- if not (hasPrefix "DRIFTWARDEN_" $upper) -}}
{{- fail (printf "config.%s: every setting is a DRIFTWARDEN_* variable (the README's configuration table)" $name) -}}
{{- end -}}
{{- if has $upper $chartSet -}}
{{- fail (printf "config.%s is set by the chart (kafkaBootstrap, the data volume, web.bind, the ports, the launcher's settings): set the chart's value instead" $name) -}}
{{- end -}}
{{- end -}}
{{- $partitions := int (index .Values.config "DRIFTWARDEN_TOPIC_PARTITIONS" | default "4") -}}
{{- if gt (int .Values.sink.replicas) $partitions -}}
{{- fail (printf "sink.replicas %d exceeds the topic partitions (%d): a sink beyond them owns nothing" (int .Values.sink.replicas) $partitions) -}}
{{- end -}}
{{- if gt (int .Values.worker.replicas) $partitions -}}
{{- fail (printf "worker.replicas %d exceeds the topic partitions (%d): the extra workers would idle" (int .Values.worker.replicas) $partitions) -}}
{{- end -}}
{{- if and (gt (int .Values.sink.replicas) 1) (not .Values.store.server) -}}
{{- fail "sink.replicas above 1 needs a ClickHouse server (store.server true, DRIFTWARDEN_CLICKHOUSE_DSN http(s)://... in the Secret): the embedded store admits one process" -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- fail "secrets.existingSecret is required: a Secret holding at least DRIFTWARDEN_WEB_TOKEN (the web servers listen beyond loopback in a pod, and the processes refuse to start without a token)" -}}
{{- end -}}
{{- if and .Values.worker.autoscaling.enabled (gt (int .Values.worker.autoscaling.maxReplicas) $partitions) -}}
{{- fail (printf "worker.autoscaling.maxReplicas %d exceeds the topic partitions (%d): the extra workers would idle" (int .Values.worker.autoscaling.maxReplicas) $partitions) -}}
{{- end -}}
{{- if not (has .Values.image.variant (list "cpu" "cuda")) -}}
{{- fail "image.variant is cpu or cuda" -}}
{{- end -}}
{{- if has .Values.web.bind (list "127.0.0.1" "localhost" "::1") -}}
{{- fail "web.bind on loopback: the kubelet's probes and Prometheus reach the pods on their own address (0.0.0.0)" -}}
{{- end -}}
{{- if and (eq .Values.retrain.launcher "kubernetes") (not .Values.persistence.enabled) (not .Values.persistence.existingClaim) -}}
{{- fail "retrain.launcher kubernetes needs the shared volume (persistence.enabled or persistence.existingClaim): the Jobs mount it" -}}
{{- end -}}
{{- $database := index .Values.config "DRIFTWARDEN_CLICKHOUSE_DATABASE" | default "driftwarden" -}}
{{- if and .Values.grafana.dashboards.enabled (ne $database "driftwarden") -}}
{{- fail (printf "grafana.dashboards: the chart's dashboards query the database driftwarden, not %s; set grafana.dashboards.enabled false and provision them with `driftwarden dashboards push` (or export) under your settings" $database) -}}
{{- end -}}
{{- end -}}

{{/* The environment of one role: (dict "root" $ "role" "worker"|"sink"|"otlp"). */}}
{{- define "driftwarden.env" -}}
{{- $root := .root -}}
envFrom:
  - configMapRef:
      name: {{ include "driftwarden.fullname" $root }}
env:
  - name: HOME
    value: /tmp
{{- if $root.Values.secrets.existingSecret }}
{{- $names := splitList " " (include "driftwarden.secretsAll" $root) }}
{{- if eq .role "sink" }}{{ $names = concat $names (splitList " " (include "driftwarden.secretsSink" $root)) }}{{ end }}
{{- range $names }}
  - name: {{ . }}
    valueFrom:
      secretKeyRef:
        name: {{ $root.Values.secrets.existingSecret }}
        key: {{ . }}
        optional: {{ ne . "DRIFTWARDEN_WEB_TOKEN" }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "driftwarden.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: web}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: web}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: web}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}
