{{/* Names, labels and values derived once, used by every template. */}}

{{- define "imagestream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<release>-<chart>`, or the release name alone when it already contains the chart name. */}}
{{- define "imagestream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "imagestream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; `component` is passed as (dict "root" $ "component" "webhook"). */}}
{{- define "imagestream.labels" -}}
helm.sh/chart: {{ include "imagestream.chart" .root }}
{{ include "imagestream.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: imagestream-controller
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "imagestream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagestream.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "imagestream.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "imagestream.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create -}}
{{- default (printf "%s-controller" (include "imagestream.fullname" .)) .Values.controller.serviceAccount.name -}}
{{- else -}}
{{- required "controller.serviceAccount.name is required when controller.serviceAccount.create is false" .Values.controller.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "imagestream.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create -}}
{{- default (printf "%s-webhook" (include "imagestream.fullname" .)) .Values.webhook.serviceAccount.name -}}
{{- else -}}
{{- required "webhook.serviceAccount.name is required when webhook.serviceAccount.create is false" .Values.webhook.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "imagestream.webhook.serviceName" -}}
{{- printf "%s-webhook" (include "imagestream.fullname" .) -}}
{{- end -}}

{{- define "imagestream.webhook.secretName" -}}
{{- default (printf "%s-webhook-receivers" (include "imagestream.fullname" .)) .Values.webhook.secret.existingSecret -}}
{{- end -}}

{{- define "imagestream.registry.name" -}}
{{- printf "%s-registry" (include "imagestream.fullname" .) -}}
{{- end -}}

{{/* The Secret holding the integrated registry's notification token (webhook side). */}}
{{- define "imagestream.registry.tokenSecretName" -}}
{{- printf "%s-registry-notifications" (include "imagestream.fullname" .) -}}
{{- end -}}

{{- define "imagestream.leaseNamespace" -}}
{{- default .Release.Namespace .Values.controller.leaderElection.namespace -}}
{{- end -}}

{{/* `host:port` of the integrated registry: the value, else the chart's registry Service. */}}
{{- define "imagestream.integratedRegistryHost" -}}
{{- if .Values.integratedRegistryHost -}}
{{- .Values.integratedRegistryHost -}}
{{- else if .Values.registry.enabled -}}
{{- printf "%s.%s.svc:%v" (include "imagestream.registry.name" .) .Release.Namespace .Values.registry.service.port -}}
{{- end -}}
{{- end -}}

{{/*
A random secret that stays the same across upgrades: the value of `key` in
the existing Secret `name`, else a new random one. Helm renders `lookup` as
empty in `helm template` and `--dry-run`, which then show a fresh value.
Called as (dict "root" $ "name" "<secret>" "key" "<key>").
*/}}
{{- define "imagestream.persistentRandom" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $existing (hasKey (default (dict) $existing.data) .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}

{{/*
The integrated registry's notification token, computed once per render (the
registry's config Secret and the webhook's token Secret must agree, and a
random value differs at every call).
*/}}
{{- define "imagestream.registry.token" -}}
{{- if not (hasKey .Values "_registryToken") -}}
{{- $token := .Values.registry.notificationToken -}}
{{- if not $token -}}
{{- $token = include "imagestream.persistentRandom" (dict "root" . "name" (include "imagestream.registry.tokenSecretName" .) "key" "token") -}}
{{- end -}}
{{- $_ := set .Values "_registryToken" $token -}}
{{- end -}}
{{- .Values._registryToken -}}
{{- end -}}

{{/* Does any receiver resolve tags at the registry (and so need registry credentials)? */}}
{{- define "imagestream.webhook.verifiesAtRegistry" -}}
{{- range .Values.webhook.receivers -}}
{{- if eq (default "payload" .verify) "registry" -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* The namespaces whose Secrets may be read: the value, else the watched ones ("" = all). */}}
{{- define "imagestream.registrySecretNamespaces" -}}
{{- if .Values.rbac.registrySecretNamespaces -}}
{{- join "," .Values.rbac.registrySecretNamespaces -}}
{{- else -}}
{{- join "," .Values.watchNamespaces -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by both processes. */}}
{{- define "imagestream.commonEnv" -}}
- name: IMAGESTREAM_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
- name: IMAGESTREAM_LOG_LEVEL
  value: {{ .Values.logging.level | quote }}
- name: IMAGESTREAM_WEBHOOK_ADDR
  value: "0.0.0.0:8080"
- name: IMAGESTREAM_HEALTH_ADDR
  value: "0.0.0.0:8081"
- name: IMAGESTREAM_METRICS_ADDR
  value: "0.0.0.0:9090"
- name: IMAGESTREAM_WATCH_NAMESPACES
  value: {{ join "," .Values.watchNamespaces | quote }}
{{- with (include "imagestream.integratedRegistryHost" .) }}
- name: IMAGESTREAM_INTEGRATED_REGISTRY
  value: {{ . | quote }}
{{- end }}
{{- if .Values.registryAccess.dockerConfigSecret }}
- name: IMAGESTREAM_REGISTRY_CONFIG
  value: /etc/imagestream/registry-auth/config.json
{{- end }}
{{- if .Values.registryAccess.caBundleConfigMap }}
- name: IMAGESTREAM_REGISTRY_CA_BUNDLE
  value: /etc/imagestream/registry-ca/ca.crt
{{- end }}
{{- end -}}

{{- define "imagestream.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.registryAccess.dockerConfigSecret }}
- name: registry-auth
  mountPath: /etc/imagestream/registry-auth
  readOnly: true
{{- end }}
{{- if .Values.registryAccess.caBundleConfigMap }}
- name: registry-ca
  mountPath: /etc/imagestream/registry-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "imagestream.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with .Values.registryAccess.dockerConfigSecret }}
- name: registry-auth
  secret:
    secretName: {{ . }}
    items:
      - key: .dockerconfigjson
        path: config.json
{{- end }}
{{- with .Values.registryAccess.caBundleConfigMap }}
- name: registry-ca
  configMap:
    name: {{ . }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}
