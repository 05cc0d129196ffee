{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "setrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified name: the release name, with the chart's unless it contains it. */}}
{{- define "setrelay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "setrelay.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "setrelay.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "setrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "setrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "setrelay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "setrelay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: setrelay
{{- end -}}

{{- define "setrelay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "setrelay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "setrelay.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
setrelay.consumer is a receiver's durable consumer, as queue.ConsumerName
makes it: "rcv_" and the name with every character outside [A-Za-z0-9_-]
replaced by "_".
*/}}
{{- define "setrelay.consumer" -}}
{{- printf "rcv_%s" (regexReplaceAll "[^A-Za-z0-9_-]" . "_") -}}
{{- end -}}

{{/*
setrelay.graceSeconds is worker.grace_period in seconds (default 20s). Only
whole seconds or minutes are understood; anything else must be given as
terminationGracePeriodSeconds.
*/}}
{{- define "setrelay.graceSeconds" -}}
{{- $g := "20s" -}}
{{- with .Values.config.worker -}}{{- with .grace_period -}}{{- $g = toString . -}}{{- end -}}{{- end -}}
{{- if regexMatch "^[0-9]+s$" $g -}}
{{- trimSuffix "s" $g | int -}}
{{- else if regexMatch "^[0-9]+m$" $g -}}
{{- mul (trimSuffix "m" $g | int) 60 -}}
{{- else -}}
{{- fail (printf "config.worker.grace_period %q: write it in whole seconds (\"20s\") or minutes (\"1m\"), or set terminationGracePeriodSeconds yourself" $g) -}}
{{- end -}}
{{- end -}}

{{/* Termination grace: the pool's grace period, then up to 30 s of NATS drain and leaving the fleet. */}}
{{- define "setrelay.terminationGrace" -}}
{{- if .Values.terminationGracePeriodSeconds -}}
{{- $t := int .Values.terminationGracePeriodSeconds -}}
{{- if le $t (int (include "setrelay.graceSeconds" .)) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than config.worker.grace_period (%ss), or the kubelet kills pushes the pool is still finishing" $t (include "setrelay.graceSeconds" .)) -}}
{{- end -}}
{{- $t -}}
{{- else -}}
{{- add (int (include "setrelay.graceSeconds" .)) 30 -}}
{{- end -}}
{{- end -}}

{{/*
setrelay.secretRef fails unless a secret-bearing setting is empty or refers
to the environment (${NAME}): literal secrets would land in a ConfigMap.
*/}}
{{- define "setrelay.secretRef" -}}
{{- $path := index . 0 -}}{{- $v := index . 1 -}}
{{- if and $v (not (regexMatch "\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}" (toString $v))) -}}
{{- fail (printf "%s holds a literal secret, which would be stored in a ConfigMap: put it in a Secret, list it under secretEnv and write ${NAME} here (or use the *_file setting with secretFiles)" $path) -}}
{{- end -}}
{{- end -}}

{{/*
setrelay.natsURL is config.nats.url; when empty, the bundled cluster's
Service with nats.enabled, else a Service called nats in the namespace.
*/}}
{{- define "setrelay.natsURL" -}}
{{- $url := "" -}}
{{- with .Values.config.nats -}}{{- $url = default "" .url -}}{{- end -}}
{{- if $url -}}
{{- $url -}}
{{- else if .Values.nats.enabled -}}
{{- printf "nats://%s-nats.%s.svc:4222" .Release.Name .Release.Namespace -}}
{{- else -}}
{{- /* Never empty: that would start an embedded server in every pod. */ -}}
nats://nats:4222
{{- end -}}
{{- end -}}

{{/* setrelay.config renders config.yaml: the values' config plus ops.listen, nats.url and the keys. */}}
{{- define "setrelay.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $nats := deepCopy (default dict (get $cfg "nats")) -}}
{{- $_ := set $nats "url" (include "setrelay.natsURL" .) -}}
{{- include "setrelay.secretRef" (list "config.nats.password" (get $nats "password")) -}}
{{- include "setrelay.secretRef" (list "config.nats.token" (get $nats "token")) -}}
{{- $_ := set $cfg "nats" $nats -}}
{{- $ops := deepCopy (default dict (get $cfg "ops")) -}}
{{- $_ := set $ops "listen" (printf "0.0.0.0:%d" (int .Values.ops.port)) -}}
{{- $_ := set $cfg "ops" $ops -}}
{{- range $i, $r := (default list (get $cfg "receivers")) -}}
{{- with $r.auth -}}
{{- include "setrelay.secretRef" (list (printf "config.receivers[%d].auth.client_secret" $i) .client_secret) -}}
{{- include "setrelay.secretRef" (list (printf "config.receivers[%d].auth.authorization_header" $i) .authorization_header) -}}
{{- end -}}
{{- end -}}
{{- $keys := list -}}
{{- range $i, $k := .Values.keys.items -}}
{{- $out := omit $k "secretKey" -}}
{{- if $k.secretKey -}}
{{- if not $.Values.keys.secretName -}}
{{- fail (printf "keys.items[%d] (%s) names secretKey %q but keys.secretName is empty: name the existing Secret holding the key files" $i $k.id $k.secretKey) -}}
{{- end -}}
{{- $_ := set $out "file" (printf "/etc/setrelay/keys/%s" $k.secretKey) -}}
{{- else if not (or $k.file $k.pkcs11 $k.kms) -}}
{{- fail (printf "keys.items[%d] (%s) has no source: give secretKey (a key file in keys.secretName), pkcs11 or kms" $i $k.id) -}}
{{- end -}}
{{- $keys = append $keys $out -}}
{{- end -}}
{{- if $keys -}}
{{- $_ := set $cfg "keys" $keys -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* setrelay.podVolumes and setrelay.mounts: configuration, keys, secret files, a writable /tmp. */}}
{{- define "setrelay.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with .root.Values.keys.secretName }}
- name: keys
  secret:
    secretName: {{ . }}
    defaultMode: 0400
{{- end }}
{{- range $i, $s := .root.Values.secretFiles }}
- name: secret-file-{{ $i }}
  secret:
    secretName: {{ $s.secretName }}
    defaultMode: 0400
{{- end }}
{{- with .root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "setrelay.volumeMounts" -}}
- name: config
  mountPath: /etc/setrelay/config
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.keys.secretName }}
- name: keys
  mountPath: /etc/setrelay/keys
  readOnly: true
{{- end }}
{{- range $i, $s := .Values.secretFiles }}
- name: secret-file-{{ $i }}
  mountPath: {{ $s.mountPath }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "setrelay.env" -}}
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
