{{/*
The operator's settings as RIGHTSIZER_* environment variables (nested fields joined by "__"), read
once by rightsizer.runtime.settings.Settings.load. A unit test loads exactly these into Settings.
*/}}
{{- define "gpu-rightsizer.env" -}}
# kopf's identity of this replica in the peering object.
- name: POD_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: RIGHTSIZER_INTERVAL_SECONDS
  value: {{ .Values.interval | toString | quote }}
{{- with .Values.namespaces }}
- name: RIGHTSIZER_NAMESPACES
  value: {{ join "," . | quote }}
{{- end }}
- name: RIGHTSIZER_DRY_RUN
  value: {{ .Values.dryRun | toString | quote }}
- name: RIGHTSIZER_METRICS_SOURCE
  value: {{ .Values.metricsSource | quote }}
{{- if gt (float64 .Values.maxMetricAgeSeconds) 0.0 }}
- name: RIGHTSIZER_MAX_METRIC_AGE_SECONDS
  value: {{ .Values.maxMetricAgeSeconds | toString | quote }}
{{- end }}
- name: RIGHTSIZER_API_CONNECTIONS
  value: {{ .Values.apiConnections | toString | quote }}
- name: RIGHTSIZER_METRICS_PORT
  value: {{ .Values.metrics.port | toString | quote }}
- name: RIGHTSIZER_HEALTH_PORT
  value: {{ .Values.health.port | toString | quote }}
- name: RIGHTSIZER_STANDALONE
  value: {{ not .Values.peering.enabled | toString | quote }}
{{- if .Values.peering.enabled }}
- name: RIGHTSIZER_PEERING_NAME
  value: {{ include "gpu-rightsizer.peeringName" . | quote }}
{{- end }}
- name: RIGHTSIZER_PROMETHEUS__URL
  value: {{ .Values.prometheus.url | quote }}
- name: RIGHTSIZER_PROMETHEUS__TIMEOUT_SECONDS
  value: {{ .Values.prometheus.timeoutSeconds | toString | quote }}
{{- with .Values.prometheus.seriesSelector }}
- name: RIGHTSIZER_PROMETHEUS__SERIES_SELECTOR
  value: {{ . | quote }}
{{- end }}
- name: RIGHTSIZER_PROMETHEUS__INSECURE_SKIP_VERIFY
  value: {{ .Values.prometheus.insecureSkipVerify | toString | quote }}
{{- if .Values.prometheus.bearerToken.secretName }}
- name: RIGHTSIZER_PROMETHEUS__BEARER_TOKEN_FILE
  value: /var/run/secrets/rightsizer/prometheus-token/token
{{- end }}
{{- if or .Values.prometheus.ca.configMapName .Values.prometheus.ca.secretName }}
- name: RIGHTSIZER_PROMETHEUS__CA_FILE
  value: /var/run/secrets/rightsizer/prometheus-ca/ca.crt
{{- end }}
{{- with .Values.dcgm.endpoints }}
- name: RIGHTSIZER_DCGM__ENDPOINTS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.dcgm.service }}
- name: RIGHTSIZER_DCGM__SERVICE
  value: {{ . | quote }}
{{- end }}
- name: RIGHTSIZER_DCGM__PORT
  value: {{ .Values.dcgm.port | toString | quote }}
- name: RIGHTSIZER_DCGM__POD_LABELS
  value: {{ .Values.dcgm.podLabels | quote }}
- name: RIGHTSIZER_DCGM__TIMEOUT_SECONDS
  value: {{ .Values.dcgm.timeoutSeconds | toString | quote }}
- name: RIGHTSIZER_DCGM__MAX_SERIES_PER_SCRAPE
  value: {{ .Values.dcgm.maxSeriesPerScrape | int | toString | quote }}
- name: RIGHTSIZER_PRICING__CURRENCY
  value: {{ .Values.pricing.currency | quote }}
- name: RIGHTSIZER_PRICING__GPU_HOUR
  value: {{ .Values.pricing.gpuHour | toString | quote }}
- name: RIGHTSIZER_PRICING__CPU_CORE_HOUR
  value: {{ .Values.pricing.cpuCoreHour | toString | quote }}
- name: RIGHTSIZER_PRICING__ENERGY_KWH
  value: {{ .Values.pricing.energyKwh | toString | quote }}
- name: RIGHTSIZER_PRICING__PUE
  value: {{ .Values.pricing.pue | toString | quote }}
- name: RIGHTSIZER_PRICING__GPU_WATTS
  value: {{ .Values.pricing.gpuWatts | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__ENABLED
  value: {{ .Values.consolidation.enabled | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__INTERVAL_SECONDS
  value: {{ .Values.consolidation.intervalSeconds | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__DRAIN_TIMEOUT_SECONDS
  value: {{ .Values.consolidation.drainTimeoutSeconds | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__DRAIN_BACKOFF_SECONDS
  value: {{ .Values.consolidation.drainBackoffSeconds | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__DRAIN_BACKOFF_CAP_SECONDS
  value: {{ .Values.consolidation.drainBackoffCapSeconds | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__POLL_SECONDS
  value: {{ .Values.consolidation.pollSeconds | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__MAX_NODES_PER_PASS
  value: {{ .Values.consolidation.maxNodesPerPass | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__DRAIN_WORKERS
  value: {{ .Values.consolidation.drainWorkers | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__INTENT_LEASE_SECONDS
  value: {{ .Values.consolidation.intentLeaseSeconds | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__REMOVAL_TIMEOUT_SECONDS
  value: {{ .Values.consolidation.removalTimeoutSeconds | toString | quote }}
- name: RIGHTSIZER_CONSOLIDATION__SCALE_UP_COOLDOWN_SECONDS
  value: {{ .Values.consolidation.scaleUpCooldownSeconds | toString | quote }}
{{- end -}}
