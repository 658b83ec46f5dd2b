{{/* Names: every object is "<fullname>-<part>", fullname being "<release>-hyperfleet" unless overridden. */}}
{{- define "hyperfleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hyperfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object; call with (dict "root" $ "component" "worker"). */}}
{{- define "hyperfleet.labels" -}}
{{ include "hyperfleet.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: hyperfleet
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "hyperfleet.componentSelector" -}}
{{ include "hyperfleet.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hyperfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "hyperfleet.mongoSecretName" -}}
{{- .Values.mongo.auth.existingSecret | default (printf "%s-mongo" (include "hyperfleet.fullname" .)) -}}
{{- end -}}

{{- define "hyperfleet.mongoHost" -}}
{{- printf "%s-mongo.%s.svc" (include "hyperfleet.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* The MongoDB address with the credentials expanded by the kubelet from MONGO_USERNAME/MONGO_PASSWORD. */}}
{{- define "hyperfleet.mongoEnv" -}}
- name: MONGO_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "hyperfleet.mongoSecretName" . }}
      key: {{ .Values.mongo.auth.usernameKey }}
- name: MONGO_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "hyperfleet.mongoSecretName" . }}
      key: {{ .Values.mongo.auth.passwordKey }}
- name: MONGO_URL
  value: {{ printf "mongodb://$(MONGO_USERNAME):$(MONGO_PASSWORD)@%s:%d/%s?authSource=admin%s" (include "hyperfleet.mongoHost" .) (int .Values.mongo.port) .Values.mongo.database (ternary (printf "&authMechanism=%s" .Values.mongo.auth.mechanism) "" (ne .Values.mongo.auth.mechanism "")) | quote }}
{{- end -}}

{{/* Non-root, no privilege escalation, read-only root filesystem: the container part of every pod. */}}
{{- define "hyperfleet.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The facts of the runtime image the chart's pods share, each written once here; a test holds them to
runtime/hyperfleet/contract.py (RUNTIME_UID, STACK_CONNECT_TIMEOUT_SECONDS, DRIVER_SPEC_PATH). */}}
{{/* The user and group the runtime image runs as (images/runtime/Dockerfile). */}}
{{- define "hyperfleet.runtimeUid" -}}
10001
{{- end -}}

{{/* The stack's processes start together with MongoDB: they wait this long for it. */}}
{{- define "hyperfleet.connectTimeoutSeconds" -}}
120
{{- end -}}

{{/* Where a driver reads its experiment's spec: the ConfigMap's one key, mounted in its directory. */}}
{{- define "hyperfleet.driverSpecPath" -}}
/hyperfleet/experiment.json
{{- end -}}

{{- define "hyperfleet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "hyperfleet.workloadAnnotations" -}}
{{- with .Values.workloadAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The pull secrets of every pod; call with the root context. */}}
{{- define "hyperfleet.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Where a component's pods go: nodeSelector, tolerations and affinity of its values (mongo, workers, monitor). */}}
{{- define "hyperfleet.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Fails on a map key that Helm's YAML 1.1 parse turned into a boolean: an unquoted y, n, yes, no,
on or off key (a search-space parameter `y:`, an env name, a label) arrives as "true" or "false", and
nothing downstream could tell. Call with (dict "path" "values" "value" .Values). */}}
{{- define "hyperfleet.noBooleanKeys" -}}
{{- $path := .path -}}
{{- if kindIs "map" .value -}}
{{- range $key, $value := .value -}}
{{- if has $key (list "true" "false") -}}
{{- fail (printf "%s: a key became %q: Helm reads values as YAML 1.1, where unquoted y, n, yes, no, on and off are booleans; quote the key (\"y\": ...)" $path $key) -}}
{{- end -}}
{{- include "hyperfleet.noBooleanKeys" (dict "path" (printf "%s.%s" $path $key) "value" $value) -}}
{{- end -}}
{{- else if kindIs "slice" .value -}}
{{- range $index, $item := .value -}}
{{- include "hyperfleet.noBooleanKeys" (dict "path" (printf "%s[%d]" $path $index) "value" $item) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when workers run trial pods: asked for, or an experiment has a container objective. */}}
{{- define "hyperfleet.trialPods" -}}
{{- $on := .Values.workers.trialPods -}}
{{- range .Values.experiments -}}
{{- if kindIs "map" .objective -}}{{- $on = true -}}{{- end -}}
{{- end -}}
{{- ternary "true" "" $on -}}
{{- end -}}

{{/* KEDA's fallback replicas, given workers.autoscaling: fallbackReplicas, empty meaning maxReplicas. */}}
{{- define "hyperfleet.fallbackReplicas" -}}
{{- if kindIs "invalid" .fallbackReplicas -}}{{ .maxReplicas }}{{- else -}}{{ .fallbackReplicas }}{{- end -}}
{{- end -}}

{{/* "true" when the dashboard's reads need its token: dashboard.readToken, else published beyond the
cluster (a Service type other than ClusterIP). infra/config.py DashboardConfig.reads_need_token: the same rule. */}}
{{- define "hyperfleet.dashboardReadToken" -}}
{{- $board := .Values.dashboard -}}
{{- if kindIs "invalid" $board.readToken -}}
{{- ternary "true" "" (ne $board.serviceType "ClusterIP") -}}
{{- else -}}
{{- ternary "true" "" $board.readToken -}}
{{- end -}}
{{- end -}}
