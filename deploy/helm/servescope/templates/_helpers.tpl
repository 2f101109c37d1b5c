{{/* The release's name is the prefix of every object (and the sidecar CR's name, for the inject annotation). */}}
{{- define "servescope.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "servescope.labels" -}}
app.kubernetes.io/name: servescope
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Values.mode }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "servescope.selectorLabels" -}}
app.kubernetes.io/name: servescope
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "servescope.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The sidecar's image: the slim build with sidecar.slim, which cannot scrape dcgm-exporter. */}}
{{- define "servescope.sidecarImage" -}}
{{- if .Values.sidecar.slim -}}
{{- if .Values.endpoints.dcgm -}}
{{- fail "sidecar.slim: the slim sidecar has no prometheus receiver to scrape dcgm-exporter; set endpoints.dcgm to \"\" (its GPUs come from NVML)" -}}
{{- end -}}
{{ .Values.image.sidecarRepository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- else -}}
{{ include "servescope.image" . }}
{{- end -}}
{{- end -}}

{{/* The engine receiver's type; anything else is a mistake to stop at. */}}
{{- define "servescope.receiver" -}}
{{- $known := list "vllm" "sglang" "tensorrt_llm" "llama_cpp" "triton" -}}
{{- if not (has .Values.engine.type $known) -}}
{{- fail (printf "engine.type must be one of %s, got %q" (join ", " $known) .Values.engine.type) -}}
{{- end -}}
{{- .Values.engine.type -}}
{{- end -}}

{{/* The sidecar container's environment: the replica's id from the downward API, the node for dcgm-exporter. */}}
{{- define "servescope.sidecarEnv" -}}
- name: POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
- name: NODE_IP
  valueFrom: {fieldRef: {fieldPath: status.hostIP}}
- name: SERVESCOPE_REPLICA
  value: $(POD_IP):{{ .Values.engine.port }}
{{- if .Values.endpoints.dcgm }}
- name: SERVESCOPE_DCGM_TARGET
  value: {{ .Values.endpoints.dcgm | quote }}
{{- end }}
{{- if .Values.sidecar.slim }}
- name: NVIDIA_VISIBLE_DEVICES
  value: all
{{- end }}
{{- end -}}

{{- define "servescope.securityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{/* The sidecar's collector configuration (config/examples/sidecar-to-gateway.yaml, without llm_signals,
     which the gateway holds). */}}
{{- define "servescope.sidecarConfig" -}}
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
  file_storage:
    directory: {{ .Values.sidecar.queueDir }}/${env:SERVESCOPE_REPLICA:-localhost:{{ .Values.engine.port }}}
    create_directory: true
receivers:
  {{ include "servescope.receiver" . }}:
    endpoint: http://localhost:{{ .Values.engine.port }}
    collection_interval: {{ .Values.intervals.scrape }}
    # The engine is on localhost in every pod: name the replica by the pod (the GPU metrics' name too).
    resource_attributes:
      service.instance.id: ${env:SERVESCOPE_REPLICA:-localhost:{{ .Values.engine.port }}}
  {{- if .Values.endpoints.dcgm }}
  prometheus/dcgm:
    config:
      scrape_configs:
        - job_name: dcgm
          scrape_interval: {{ .Values.intervals.scrape }}
          static_configs:
            - targets: ["${env:SERVESCOPE_DCGM_TARGET:-localhost:9400}"]
              labels: {instance: "${env:SERVESCOPE_REPLICA:-localhost:{{ .Values.engine.port }}}"}
  {{- end }}
  {{- if .Values.sidecar.slim }}
  nvml:
    collection_interval: {{ .Values.intervals.scrape }}
    replicas:
      - port: {{ .Values.engine.port }}
        service_instance_id: ${env:SERVESCOPE_REPLICA:-localhost:{{ .Values.engine.port }}}
        engine: {{ include "servescope.receiver" . }}
  {{- end }}
  otlp:
    protocols:
      grpc:
        endpoint: {{ .Values.endpoints.otlpGrpc }}
      http:
        endpoint: {{ .Values.endpoints.otlpHttp }}
processors:
  memory_limiter: {check_interval: 1s, limit_percentage: 80, spike_limit_percentage: 20}
  llm_normalize: {}
connectors:
  llm_root_cause:
    metrics_flush_interval: {{ .Values.intervals.signals }}
    slo:
      {{- toYaml (dict "default" .Values.slo.default) | nindent 6 }}
      {{- with .Values.slo.models }}
      models:
        {{- toYaml . | nindent 8 }}
      {{- end }}
exporters:
  otlp_grpc/gateway:
    endpoint: {{ .Values.endpoints.gateway }}
    sending_queue:
      storage: file_storage
    tls: {insecure: true}
service:
  extensions: [health_check, file_storage]
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus: {host: localhost, port: 8888}
  pipelines:
    metrics:
      receivers: [{{ include "servescope.receiver" . }}{{ if .Values.endpoints.dcgm }}, prometheus/dcgm{{ end }}{{ if .Values.sidecar.slim }}, nvml{{ end }}]
      processors: [memory_limiter, llm_normalize]
      exporters: [otlp_grpc/gateway, llm_root_cause]
    traces:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [llm_root_cause]
    traces/explained:
      receivers: [llm_root_cause]
      exporters: [otlp_grpc/gateway]
    metrics/explained:
      receivers: [llm_root_cause]
      exporters: [otlp_grpc/gateway]
    logs/slow_requests:
      receivers: [llm_root_cause]
      exporters: [otlp_grpc/gateway]
{{- end -}}

{{/* The gateway's collector configuration (config/examples/gateway.yaml, with k8s_attributes, llm_signals
     and llm_routing). */}}
{{- define "servescope.gatewayConfig" -}}
{{- $ex := .Values.gateway.exporters -}}
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {{ .Values.endpoints.otlpListen }}
processors:
  memory_limiter: {check_interval: 1s, limit_percentage: 80, spike_limit_percentage: 20}
  # The first association that resolves wins: the ray_serve receiver's k8s.pod.ip (the Ray node's IP,
  # under KubeRay the pod's), then the connection's address (a sidecar connects from its replica's pod).
  k8s_attributes:
    auth_type: serviceAccount
    pod_association:
      - sources: [{from: resource_attribute, name: k8s.pod.ip}]
      - sources: [{from: connection}]
    extract:
      metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.node.name, k8s.deployment.name, k8s.statefulset.name]
      labels:
        {{- range .Values.gateway.podLabels }}
        - {tag_name: {{ . }}, key: {{ . }}, from: pod}
        {{- end }}
        # KubeRay's pod labels (the Ray cluster, head or worker, serve traffic), under servescope's names.
        - {tag_name: ray.cluster.name, key: ray.io/cluster, from: pod}
        - {tag_name: ray.node.type, key: ray.io/node-type, from: pod}
        - {tag_name: ray.serve.traffic, key: ray.io/serve, from: pod}
connectors:
  llm_signals:
    interval: {{ .Values.intervals.signals }}
    autoscaling:
      min_replicas: {{ .Values.autoscaling.minReplicas }}
      max_replicas: {{ .Values.autoscaling.maxReplicas }}
      target_waiting_per_replica: {{ .Values.autoscaling.targetWaitingPerReplica }}
      target_kv_utilization: {{ .Values.autoscaling.targetKVUtilization }}
    cost:
      gpu_price_per_hour:
        {{- range $name, $price := .Values.gpuPrices.perHour }}
        {{ $name | quote }}: {{ $price }}
        {{- end }}
      default_gpu_price_per_hour: {{ .Values.gpuPrices.default }}
      gpus_per_replica: {{ .Values.gpuPrices.gpusPerReplica }}
exporters:
  llm_routing:
    endpoint: {{ .Values.endpoints.routingListen }}
  {{- /* One exporter may serve several signals: listed under each, configured once. */}}
  {{- $all := dict }}
  {{- range $signal := list "traces" "metrics" "logs" }}
  {{- range $name, $cfg := index $ex $signal }}
  {{- $_ := set $all $name $cfg }}
  {{- end }}
  {{- end }}
  {{- range $name, $cfg := $all }}
  {{ $name }}:
    {{- toYaml $cfg | nindent 4 }}
  {{- end }}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus: {host: 0.0.0.0, port: 8888}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, k8s_attributes]
      exporters: [{{ keys $ex.traces | sortAlpha | join ", " }}]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, k8s_attributes]
      exporters: [{{ keys $ex.metrics | sortAlpha | join ", " }}, llm_signals, llm_routing]
    metrics/signals:
      receivers: [llm_signals]
      exporters: [{{ keys $ex.metrics | sortAlpha | join ", " }}, llm_routing]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, k8s_attributes]
      exporters: [{{ keys $ex.logs | sortAlpha | join ", " }}]
    logs/incidents:
      receivers: [llm_signals]
      exporters: [{{ keys $ex.logs | sortAlpha | join ", " }}]
{{- end -}}
