{{/*
The chart name, for the app.kubernetes.io/name label.
*/}}
{{- define "callfs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: the release name, so objects are <release>-gateway and so on.
*/}}
{{- define "callfs.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/*
The name of one component's objects: (dict "ctx" $ "component" "gateway") -> <release>-gateway.
*/}}
{{- define "callfs.componentName" -}}
{{- printf "%s-%s" (include "callfs.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "callfs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: (dict "ctx" $ "component" "gateway"); an empty component selects the release.
*/}}
{{- define "callfs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "callfs.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/*
Labels of every object: (dict "ctx" $ "component" "gateway").
*/}}
{{- define "callfs.labels" -}}
helm.sh/chart: {{ include "callfs.chart" .ctx }}
{{ include "callfs.selectorLabels" . }}
app.kubernetes.io/part-of: callfs
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
An image reference: (dict "ctx" $ "image" .Values.postgresql.image "defaultTag" "16"). global.imageRegistry
goes before the repository; a digest pins the image as repository@sha256:... and the tag is ignored.
*/}}
{{- define "callfs.imageRef" -}}
{{- $repository := .image.repository }}
{{- with (.ctx.Values.global | default dict).imageRegistry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .defaultTag .image.tag) }}
{{- end }}
{{- end }}

{{/*
The CallFS image reference (tag default: the chart's appVersion).
*/}}
{{- define "callfs.image" -}}
{{- include "callfs.imageRef" (dict "ctx" . "image" .Values.image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/*
Pull secrets of every pod: global.imagePullSecrets (as `{name: x}` or plain names) then
imagePullSecrets, each name once; empty when there are none.
*/}}
{{- define "callfs.imagePullSecrets" -}}
{{- $names := list }}
{{- range concat ((.Values.global | default dict).imagePullSecrets | default list) .Values.imagePullSecrets }}
{{- if kindIs "string" . }}
{{- $names = append $names . }}
{{- else }}
{{- $names = append $names .name }}
{{- end }}
{{- end }}
{{- range $names | uniq }}
- name: {{ . }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount of the gateway and link-service.
*/}}
{{- define "callfs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "callfs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Secret holding api-keys, internal-proxy-secret and single-use-link-secret.
*/}}
{{- define "callfs.authSecretName" -}}
{{- default (include "callfs.componentName" (dict "ctx" . "component" "auth")) .Values.auth.existingSecret }}
{{- end }}

{{/*
Where the PostgreSQL DSN lives: a dict with "name" and "key".
*/}}
{{- define "callfs.databaseSecret" -}}
{{- if .Values.postgresql.enabled }}
{{- dict "name" (include "callfs.componentName" (dict "ctx" . "component" "postgresql")) "key" "dsn" | toJson }}
{{- else if .Values.externalPostgresql.existingSecret }}
{{- dict "name" .Values.externalPostgresql.existingSecret "key" .Values.externalPostgresql.existingSecretKey | toJson }}
{{- else }}
{{- dict "name" (include "callfs.componentName" (dict "ctx" . "component" "database")) "key" "dsn" | toJson }}
{{- end }}
{{- end }}

{{/*
Where the Redis password lives: a dict with "name" and "key", empty when Redis has no password.
*/}}
{{- define "callfs.redisSecret" -}}
{{- if .Values.redis.enabled }}
{{- dict "name" (include "callfs.componentName" (dict "ctx" . "component" "redis")) "key" "redis-password" | toJson }}
{{- else if .Values.externalRedis.existingSecret }}
{{- dict "name" .Values.externalRedis.existingSecret "key" .Values.externalRedis.existingSecretKey | toJson }}
{{- else if .Values.externalRedis.password }}
{{- dict "name" (include "callfs.componentName" (dict "ctx" . "component" "redis")) "key" "redis-password" | toJson }}
{{- else }}
{{- dict | toJson }}
{{- end }}
{{- end }}

{{/*
Where the S3 keys live: a dict with "name", "accessKey" and "secretKey", empty when the pod's identity is used.
*/}}
{{- define "callfs.s3Secret" -}}
{{- if .Values.s3.existingSecret }}
{{- dict "name" .Values.s3.existingSecret "accessKey" .Values.s3.existingSecretAccessKeyKey "secretKey" .Values.s3.existingSecretSecretKeyKey | toJson }}
{{- else if or .Values.s3.accessKey .Values.s3.secretKey }}
{{- dict "name" (include "callfs.componentName" (dict "ctx" . "component" "s3")) "accessKey" "access-key" "secretKey" "secret-key" | toJson }}
{{- else }}
{{- dict | toJson }}
{{- end }}
{{- end }}

{{/*
The Redis address CallFS connects to.
*/}}
{{- define "callfs.redisAddr" -}}
{{- if .Values.redis.enabled }}
{{- printf "%s:6379" (include "callfs.componentName" (dict "ctx" . "component" "redis")) }}
{{- else }}
{{- .Values.externalRedis.addr }}
{{- end }}
{{- end }}

{{/*
The public base URL for download links.
*/}}
{{- define "callfs.externalUrl" -}}
{{- if .Values.config.externalUrl }}
{{- .Values.config.externalUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := first .Values.ingress.hosts }}
{{- $scheme := "http" }}
{{- range .Values.ingress.tls }}
{{- if has $host (.hosts | default list) }}
{{- $scheme = "https" }}
{{- end }}
{{- end }}
{{- printf "%s://%s" $scheme $host }}
{{- end }}
{{- end }}

{{/*
A value kept across upgrades: (dict "secret" <looked-up Secret or empty> "key" "k" "length" 40).
The existing value wins; otherwise a fresh random one. Returns the base64 form.
*/}}
{{- define "callfs.keptRandom" -}}
{{- $data := (get (.secret | default dict) "data") | default dict }}
{{- if hasKey $data .key }}
{{- index $data .key }}
{{- else }}
{{- randAlphaNum (int .length) | b64enc }}
{{- end }}
{{- end }}

{{/*
Checksum of the settings every pod reads, so pods roll when it changes.
*/}}
{{- define "callfs.configChecksum" -}}
{{- include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}

{{/*
Checksum of the Secrets the chart writes (and of which Secrets are used), so pods roll when they change.
*/}}
{{- define "callfs.secretChecksum" -}}
{{- $refs := list (include "callfs.authSecretName" .) (include "callfs.databaseSecret" .) (include "callfs.redisSecret" .) (include "callfs.s3Secret" .) }}
{{- print (include (print .Template.BasePath "/secrets.yaml") .) ($refs | join ",") | sha256sum }}
{{- end }}

{{/*
Pod-level settings shared by the CallFS roles: (dict "ctx" $ "values" .Values.gateway), plus
optionally "defaultAffinity" and "defaultTopologySpreadConstraints": used when the role's own
affinity / topologySpreadConstraints are empty, replaced as a whole when they are set.
*/}}
{{- define "callfs.podCommon" -}}
enableServiceLinks: false
{{- with include "callfs.imagePullSecrets" .ctx | trim }}
imagePullSecrets:
  {{- . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity | default .defaultAffinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints | default .defaultTopologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Default affinity of the storage nodes: keep them off each other's host (preferred, so a
cluster with fewer hosts than storage nodes still runs them all), so that the replicas of a
file (replication.factor) sit on different machines. storageNode.affinity replaces it.
*/}}
{{- define "callfs.storageNode.defaultAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "callfs.selectorLabels" (dict "ctx" . "component" "storage-node") | nindent 12 }}
{{- end }}

{{/*
Default topology spread of the storage nodes: even across hosts, then across zones, both
ScheduleAnyway (a preference, never a pod left Pending). storageNode.topologySpreadConstraints
replaces them. No matchLabelKeys: pods of the old and the new revision hold replicas alike.
*/}}
{{- define "callfs.storageNode.defaultTopologySpreadConstraints" -}}
{{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
- maxSkew: 1
  topologyKey: {{ . }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "callfs.selectorLabels" (dict "ctx" $ "component" "storage-node") | nindent 6 }}
{{- end }}
{{- end }}

{{/*
Environment of the gateway and link-service beyond the ConfigMap.
*/}}
{{- define "callfs.apiEnv" -}}
- name: CALLFS_INSTANCE_DISCOVERY_KUBERNETES_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: CALLFS_SECRETS_DIR
  value: /etc/callfs/secrets
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end }}

{{/*
The Secret files of the gateway and link-service, projected into CALLFS_SECRETS_DIR under the
variable names the settings read.
*/}}
{{- define "callfs.apiSecretsVolume" -}}
- name: secrets
  projected:
    defaultMode: 288 # 0440: owner and group (fsGroup) read
    sources:
      - secret:
          name: {{ include "callfs.authSecretName" . }}
          items:
            - key: api-keys
              path: CALLFS_AUTH_API_KEYS
            - key: internal-proxy-secret
              path: CALLFS_AUTH_INTERNAL_PROXY_SECRET
            - key: single-use-link-secret
              path: CALLFS_AUTH_SINGLE_USE_LINK_SECRET
      {{- $db := include "callfs.databaseSecret" . | fromJson }}
      - secret:
          name: {{ $db.name }}
          items:
            - key: {{ $db.key }}
              path: CALLFS_METADATA_STORE_DSN
      {{- $redis := include "callfs.redisSecret" . | fromJson }}
      {{- if $redis.name }}
      - secret:
          name: {{ $redis.name }}
          items:
            - key: {{ $redis.key }}
              path: CALLFS_DLM_REDIS_PASSWORD
      {{- end }}
      {{- $s3 := include "callfs.s3Secret" . | fromJson }}
      {{- if $s3.name }}
      - secret:
          name: {{ $s3.name }}
          items:
            - key: {{ $s3.accessKey }}
              path: CALLFS_BACKEND_S3_ACCESS_KEY
            - key: {{ $s3.secretKey }}
              path: CALLFS_BACKEND_S3_SECRET_KEY
      {{- end }}
{{- end }}

{{/*
Probes of one role: (dict "probes" $values.probes "startup" <handler> "liveness" <handler>
"readiness" <handler>), each handler a dict such as (dict "grpc" (dict "port" 50051)); the
timings come from the role's `probes` values.
*/}}
{{- define "callfs.probes" -}}
{{- $probes := dict }}
{{- range $probe := list "startup" "liveness" "readiness" }}
{{- $timing := get $.probes $probe | default dict }}
{{- $_ := set $probes (printf "%sProbe" $probe) (merge (deepCopy $timing) (get $ $probe)) }}
{{- end }}
{{- toYaml $probes }}
{{- end }}

{{/*
HTTP probes of the gateway and link-service: (dict "probes" $values.probes). /health keeps a
pod alive; /ready (the metadata store answers) puts it behind its Service.
*/}}
{{- define "callfs.httpProbes" -}}
{{- $health := dict "httpGet" (dict "path" "/health" "port" "http") }}
{{- $ready := dict "httpGet" (dict "path" "/ready" "port" "http") }}
{{- include "callfs.probes" (dict "probes" .probes "startup" $health "liveness" $health "readiness" $ready) }}
{{- end }}

{{/*
Refuse contradictory values with a message naming them.
*/}}
{{- define "callfs.validate" -}}
{{- if and (eq .Values.config.defaultBackend "s3") (not .Values.s3.bucket) }}
{{- fail "config.defaultBackend is s3: set s3.bucket" }}
{{- end }}
{{- if and .Values.postgresql.enabled (or .Values.externalPostgresql.dsn .Values.externalPostgresql.existingSecret) }}
{{- fail "postgresql.enabled (bundled) and externalPostgresql are both set: choose one" }}
{{- end }}
{{- if and .Values.redis.enabled (or .Values.externalRedis.password .Values.externalRedis.existingSecret) }}
{{- fail "redis.enabled (bundled) and externalRedis credentials are both set: choose one" }}
{{- end }}
{{- range $role := list "gateway" "storageNode" "linkService" }}
{{- range (get $.Values $role).extraEnv }}
{{- if and (hasKey . "value") (regexMatch "SECRET|PASSWORD|API_KEYS|DSN|ACCESS_KEY" (upper .name)) }}
{{- fail (printf "%s.extraEnv: %s looks like a secret: take it from a Secret (valueFrom.secretKeyRef) instead of a value" $role .name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) }}
{{- fail "httpRoute.enabled: set httpRoute.parentRefs to the Gateway(s) the route attaches to" }}
{{- end }}
{{- if and .Values.s3.existingSecret (or .Values.s3.accessKey .Values.s3.secretKey) }}
{{- fail "s3.existingSecret and s3.accessKey/secretKey are both set: choose one" }}
{{- end }}
{{- /* The schema checks each value alone; only a template can compare two of them. */}}
{{- $factor := int .Values.replication.factor }}
{{- $nodes := int .Values.storageNode.replicas }}
{{- $quorum := int .Values.replication.writeQuorum }}
{{- if gt $factor $nodes }}
{{- fail (printf "replication.factor (%d) exceeds storageNode.replicas (%d): every upload would answer 503; lower the factor or add storage nodes" $factor $nodes) }}
{{- end }}
{{- if gt $quorum $factor }}
{{- fail (printf "replication.writeQuorum (%d) exceeds replication.factor (%d): set at most the factor (0: all replicas)" $quorum $factor) }}
{{- end }}
{{- /* A budget of `factor` pods would let a drain take down every replica of a file at once. A
percentage depends on the replica count at eviction time and is left alone. */}}
{{- $budget := .Values.storageNode.pdb.maxUnavailable }}
{{- if and .Values.storageNode.pdb.enabled (gt $factor 1) (not (kindIs "string" $budget)) }}
{{- if ge (int $budget) $factor }}
{{- fail (printf "storageNode.pdb.maxUnavailable (%d) must be below replication.factor (%d): a node drain could take down every replica of a file at once and make it unreadable; set it to at most %d" (int $budget) $factor (sub $factor 1)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
NetworkPolicy of an HTTP role (gateway, link-service): (dict "ctx" $ "component" "gateway").
Ingress: the API port from anywhere (ingress controller, Gateway, other apps), the metrics port
from networkPolicy.metricsFrom. With networkPolicy.egress.enabled, egress too: DNS, the storage
nodes' gRPC, the bundled PostgreSQL and Redis, and networkPolicy.egress.extraRules (external
databases, S3, the Kubernetes API server), nothing else.
*/}}
{{- define "callfs.apiNetworkPolicy" -}}
{{- $ctx := .ctx }}
{{- $egress := $ctx.Values.networkPolicy.egress }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "callfs.componentName" (dict "ctx" $ctx "component" .component) }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "callfs.labels" (dict "ctx" $ctx "component" .component) | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "callfs.selectorLabels" (dict "ctx" $ctx "component" .component) | nindent 6 }}
  policyTypes:
    - Ingress
    {{- if $egress.enabled }}
    - Egress
    {{- end }}
  ingress:
    - ports:
        - port: http
          protocol: TCP
    - ports:
        - port: metrics
          protocol: TCP
      {{- with $ctx.Values.networkPolicy.metricsFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  {{- if $egress.enabled }}
  egress:
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
      {{- with $egress.dnsTo }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "callfs.selectorLabels" (dict "ctx" $ctx "component" "storage-node") | nindent 14 }}
      ports:
        - port: 50051
          protocol: TCP
    {{- if $ctx.Values.postgresql.enabled }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "callfs.selectorLabels" (dict "ctx" $ctx "component" "postgresql") | nindent 14 }}
      ports:
        - port: 5432
          protocol: TCP
    {{- end }}
    {{- if $ctx.Values.redis.enabled }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "callfs.selectorLabels" (dict "ctx" $ctx "component" "redis") | nindent 14 }}
      ports:
        - port: 6379
          protocol: TCP
    {{- end }}
    {{- with $egress.extraRules }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}
