{{/* The release's full name: "herald" for a release named herald. */}}
{{- define "herald.fullname" -}}
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

{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "herald.labels" -}}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "ingest"). */}}
{{- define "herald.componentLabels" -}}
{{ include "herald.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "herald.componentSelector" -}}
{{ include "herald.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "herald.serviceAccountName" -}}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "herald.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Whether the Kubernetes catalog is used (router and senders need RBAC). */}}
{{- define "herald.kubernetesCatalog" -}}
{{- if eq .Values.catalog.mode "kubernetes" }}true{{ end -}}
{{- end -}}

{{/* The full name the NATS subchart gives its objects (its nats.fullname). */}}
{{- define "herald.natsFullname" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "nats" .Values.nats.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "herald.natsClusterReplicas" -}}
{{- $cluster := .Values.nats.config.cluster | default dict -}}
{{- if $cluster.enabled }}{{ $cluster.replicas | default 3 | int }}{{ else }}1{{ end -}}
{{- end -}}

{{/* Standalone with a nats-server container in the pod. */}}
{{- define "herald.sidecarNats" -}}
{{- if and (eq .Values.mode "standalone") .Values.standalone.nats.enabled -}}
{{- if .Values.nats.enabled -}}
{{- fail "standalone.nats.enabled and nats.enabled both give Herald a NATS: turn one off" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/*
HERALD_NATS_URL. The bundled NATS: every server of its StatefulSet by its
headless Service, so that Herald connects while one is down. The pod's own
nats-server in standalone mode: loopback.
*/}}
{{- define "herald.natsUrl" -}}
{{- if include "herald.sidecarNats" . -}}
nats://127.0.0.1:4222
{{- else if .Values.nats.enabled -}}
{{- $name := include "herald.natsFullname" . -}}
{{- $urls := list -}}
{{- range $i, $_ := until (include "herald.natsClusterReplicas" . | int) -}}
{{- $urls = append $urls (printf "nats://%s-%d.%s-headless.%s.svc:4222" $name $i $name $.Release.Namespace) -}}
{{- end -}}
{{- join "," $urls -}}
{{- else if .Values.natsUrl -}}
{{- .Values.natsUrl -}}
{{- else -}}
{{- fail "set natsUrl (your NATS) or nats.enabled=true (the bundled NATS chart)" -}}
{{- end -}}
{{- end -}}

{{/* HERALD_STREAM_REPLICAS: see streamReplicas in values.yaml. */}}
{{- define "herald.streamReplicas" -}}
{{- $servers := 0 -}}
{{- if .Values.nats.enabled -}}
{{- $servers = include "herald.natsClusterReplicas" . | int -}}
{{- else if include "herald.sidecarNats" . -}}
{{- $servers = 1 -}}
{{- end -}}
{{- $replicas := 3 -}}
{{- if not (kindIs "invalid" .Values.streamReplicas) -}}
{{- $replicas = .Values.streamReplicas | int -}}
{{- else if gt $servers 0 -}}
{{- $replicas = $servers -}}
{{- end -}}
{{- if and (gt $servers 0) (gt $replicas $servers) -}}
{{- fail (printf "streamReplicas=%d but the NATS of this release has %d server(s): a stream cannot have more replicas than servers" $replicas $servers) -}}
{{- end -}}
{{- $replicas -}}
{{- end -}}

{{/* The environment every Herald container shares. */}}
{{- define "herald.commonEnv" -}}
- name: HERALD_NATS_URL
  value: {{ include "herald.natsUrl" . | quote }}
- name: HERALD_STREAM_REPLICAS
  value: {{ include "herald.streamReplicas" . | quote }}
- name: HERALD_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- if .Values.natsCreds.secretName }}
- name: HERALD_NATS_CREDS
  value: /etc/herald/nats/{{ .Values.natsCreds.key }}
{{- end }}
{{- end -}}

{{/* The catalog's environment (router, sender, standalone). */}}
{{- define "herald.catalogEnv" -}}
- name: HERALD_CATALOG
  value: {{ .Values.catalog.mode | quote }}
{{- if eq .Values.catalog.mode "folder" }}
- name: HERALD_CONFIG_DIR
  value: /config
{{- else }}
{{- with .Values.catalog.kubernetes }}
{{- if .watchNamespace }}
- name: HERALD_WATCH_NAMESPACE
  value: {{ .watchNamespace | quote }}
{{- end }}
{{- if .watchLabelSelector }}
- name: HERALD_WATCH_LABEL_SELECTOR
  value: {{ .watchLabelSelector | quote }}
{{- end }}
{{- $cluster := .catalogCluster | default $.Values.ingest.cluster }}
{{- if $cluster }}
- name: HERALD_CATALOG_CLUSTER
  value: {{ $cluster | quote }}
{{- end }}
- name: HERALD_OBJECT_LABELS
  value: {{ .objectLabels | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Ingest's environment (ingest, standalone). */}}
{{- define "herald.ingestEnv" -}}
{{- if .Values.ingest.cluster }}
- name: HERALD_CLUSTER
  value: {{ .Values.ingest.cluster | quote }}
{{- end }}
{{- if not .Values.ingest.grpc }}
- name: HERALD_GRPC_LISTEN
  value: "off"
{{- end }}
{{- if .Values.ingest.tls.enabled }}
- name: HERALD_TLS_CERT_FILE
  value: /etc/herald/tls/{{ .Values.ingest.tls.certKey }}
- name: HERALD_TLS_KEY_FILE
  value: /etc/herald/tls/{{ .Values.ingest.tls.keyKey }}
{{- end }}
{{- end -}}

{{- define "herald.clustersFileEnv" -}}
{{- if .Values.clustersFile.secretName }}
- name: HERALD_CLUSTERS_FILE
  value: /etc/herald/clusters/{{ .Values.clustersFile.key }}
{{- end }}
{{- end -}}

{{/*
The pod spec of one Herald component:
(dict "root" $ "component" "ingest" "args" (list "ingest") "env" "..." "ports" "..."
      "volumes" "..." "mounts" "..." "token" bool "values" .Values.ingest)
*/}}
{{- define "herald.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .token }}
serviceAccountName: {{ include "herald.serviceAccountName" $root }}
automountServiceAccountToken: true
{{- else }}
automountServiceAccountToken: false
{{- end }}
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range $v.topologySpreadConstraints }}
  {{- /* This component's pods unless the entry names its own labelSelector. */}}
  - {{ toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" (include "herald.componentSelector" (dict "root" $root "component" $.component) | fromYaml)))) | nindent 4 | trim }}
  {{- end }}
{{- end }}
{{- with .initContainers }}
initContainers:
  {{- . | nindent 2 }}
{{- end }}
containers:
  - name: herald
    image: {{ include "herald.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      {{- toYaml (concat .args $v.extraArgs .values.extraArgs) | nindent 6 }}
    env:
      {{- include "herald.commonEnv" $root | nindent 6 }}
      {{- with .env }}{{ . | nindent 6 }}{{ end }}
      {{- with (concat $v.extraEnv .values.extraEnv) }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $v.extraEnvFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    ports:
      {{- with .ports }}{{ . | nindent 6 }}{{ end }}
      - name: admin
        containerPort: 8080
    livenessProbe:
      httpGet:
        path: /healthz
        port: admin
      {{- toYaml $v.probes.liveness | nindent 6 }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: admin
      {{- toYaml $v.probes.readiness | nindent 6 }}
    resources:
      {{- toYaml .values.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    {{- $mounts := .mounts | default "" }}
    {{- if $v.natsCreds.secretName }}
    {{- $mounts = printf "%s\n- name: nats-creds\n  mountPath: /etc/herald/nats\n  readOnly: true" $mounts }}
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- $mounts = printf "%s\n%s" $mounts (toYaml .) }}
    {{- end }}
    {{- if trim $mounts }}
    volumeMounts:
      {{- trim $mounts | nindent 6 }}
    {{- end }}
{{- $volumes := .volumes | default "" }}
{{- if $v.natsCreds.secretName }}
{{- $volumes = printf "%s\n- name: nats-creds\n  secret:\n    secretName: %s" $volumes $v.natsCreds.secretName }}
{{- end }}
{{- with $v.extraVolumes }}
{{- $volumes = printf "%s\n%s" $volumes (toYaml .) }}
{{- end }}
{{- if trim $volumes }}
volumes:
  {{- trim $volumes | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The folder catalog's mounts and volumes (router, sender, standalone). */}}
{{- define "herald.folderMounts" -}}
{{- if eq .Values.catalog.mode "folder" }}
- name: alerts
  mountPath: /config/alerts
  readOnly: true
{{- if .Values.catalog.folder.existingSecret }}
- name: provider-secrets
  mountPath: /config/secrets
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "herald.folderVolumes" -}}
{{- if eq .Values.catalog.mode "folder" }}
- name: alerts
  configMap:
    name: {{ .Values.catalog.folder.existingConfigMap | default (printf "%s-alerts" (include "herald.fullname" .)) }}
{{- if .Values.catalog.folder.existingSecret }}
- name: provider-secrets
  secret:
    secretName: {{ .Values.catalog.folder.existingSecret }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "herald.clustersFileMounts" -}}
{{- if .Values.clustersFile.secretName }}
- name: clusters
  mountPath: /etc/herald/clusters
  readOnly: true
{{- end }}
{{- end -}}

{{- define "herald.clustersFileVolumes" -}}
{{- if .Values.clustersFile.secretName }}
- name: clusters
  secret:
    secretName: {{ .Values.clustersFile.secretName }}
{{- end }}
{{- end -}}

{{- define "herald.tlsMounts" -}}
{{- if .Values.ingest.tls.enabled }}
- name: tls
  mountPath: /etc/herald/tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "herald.tlsVolumes" -}}
{{- if .Values.ingest.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "ingest.tls.secretName is required with ingest.tls.enabled" .Values.ingest.tls.secretName }}
{{- end }}
{{- end -}}

{{- define "herald.ingestPorts" -}}
- name: http
  containerPort: 9090
{{- if .Values.ingest.grpc }}
- name: grpc
  containerPort: 9091
{{- end }}
{{- end -}}

{{- define "herald.podAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: "8080"
prometheus.io/path: /metrics
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The standalone pod's nats-server, as a native sidecar (an init container that keeps running). */}}
{{- define "herald.natsSidecar" -}}
{{- $n := .Values.standalone.nats -}}
- name: nats
  image: {{ printf "%s:%s" $n.image.repository $n.image.tag }}
  imagePullPolicy: {{ $n.image.pullPolicy }}
  restartPolicy: Always
  args: ["--config", "/etc/nats/nats.conf"]
  ports:
    - name: nats-monitor
      containerPort: 8222
  startupProbe:
    httpGet:
      path: /healthz?js-enabled-only=true
      port: 8222
    periodSeconds: 2
    failureThreshold: 90
  livenessProbe:
    httpGet:
      path: /healthz?js-enabled-only=true
      port: 8222
    periodSeconds: 10
  resources:
    {{- toYaml $n.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: nats-config
      mountPath: /etc/nats
      readOnly: true
    - name: nats-data
      mountPath: /data
{{- end -}}

{{/* NetworkPolicy rules: the admin port; DNS and NATS egress. */}}
{{- define "herald.npAdminRule" -}}
- ports:
    - port: admin
  {{- with .metricsFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- define "herald.npEgressBase" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
- ports:
    {{- range .natsPorts }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}
