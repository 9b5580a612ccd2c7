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

{{/*
Where the receivers' secrets come from, decided without randomness so that
`helm template` renders the same bytes every time:
- `webhook.secret.existingSecret`: that Secret holds every key;
- otherwise keys with a value in `webhook.secret.values` are rendered in the
  Secret `<fullname>-webhook-receivers`, and every other key is generated at
  run time by the webhook into `<fullname>-webhook-generated`
  (webhook/generated_secret.py), which no manifest contains.
*/}}
{{- define "imagestream.webhook.secretName" -}}
{{- default (printf "%s-webhook-receivers" (include "imagestream.fullname" .)) .Values.webhook.secret.existingSecret -}}
{{- end -}}

{{/* The Secret whose key signs the integrated registry's tokens (webhook.registryTokens). */}}
{{- define "imagestream.registryTokenSigningSecret" -}}
{{- .Values.webhook.registryTokens.signingSecret | default (printf "%s-registry-token-signing" (include "imagestream.fullname" .)) -}}
{{- end -}}

{{- define "imagestream.generatedSecretName" -}}
{{- printf "%s-webhook-generated" (include "imagestream.fullname" .) -}}
{{- end -}}

{{/* Every key the receivers name, comma-separated and sorted. */}}
{{- define "imagestream.webhook.receiverKeys" -}}
{{- $keys := dict -}}
{{- range .Values.webhook.receivers -}}
{{- range (default (list) .auth.secretKeys) -}}
{{- $_ := set $keys . true -}}
{{- end -}}
{{- end -}}
{{- keys $keys | sortAlpha | join "," -}}
{{- end -}}

{{/* The Secret holding receiver key `.key`; called as (dict "root" $ "key" "<key>"). */}}
{{- define "imagestream.webhook.secretFor" -}}
{{- $values := .root.Values.webhook.secret -}}
{{- if or $values.existingSecret (index $values.values .key) -}}
{{- include "imagestream.webhook.secretName" .root -}}
{{- else -}}
{{- include "imagestream.generatedSecretName" .root -}}
{{- end -}}
{{- end -}}

{{/*
The keys the webhook generates at run time, comma-separated and sorted:
receiver keys nothing supplies, and with `registry.operator` the registry's
notification token (unless `registry.notificationToken`).
*/}}
{{- define "imagestream.generatedKeys" -}}
{{- $keys := list -}}
{{- if not .Values.webhook.secret.existingSecret -}}
{{- range (include "imagestream.webhook.receiverKeys" . | splitList "," | compact) -}}
{{- if not (index $.Values.webhook.secret.values .) -}}
{{- $keys = append $keys . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.registry.operator (not .Values.registry.notificationToken) -}}
{{- $keys = append $keys "registry-notification-token" -}}
{{- end -}}
{{- $keys | sortAlpha | join "," -}}
{{- end -}}

{{/* The namespace the operator runs the registry in (registry.namespace, else the release's). */}}
{{- define "imagestream.registry.namespace" -}}
{{- default .Release.Namespace .Values.registry.namespace -}}
{{- end -}}

{{/* The token service's URL the operator's registry sends clients to (webhook.registryTokens.realm). */}}
{{- define "imagestream.registryTokenRealm" -}}
{{- if .Values.webhook.registryTokens.realm -}}
{{- .Values.webhook.registryTokens.realm -}}
{{- else -}}
{{- $host := .Values.webhook.service.clusterIP | default (printf "%s.%s.svc" (include "imagestream.webhook.serviceName" .) .Release.Namespace) -}}
{{- printf "http://%s:%v/v1/registry/token" $host .Values.webhook.service.port -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the integrated registry's notification token (webhook side). */}}
{{- define "imagestream.registry.tokenSecretName" -}}
{{- printf "%s-registry-notifications" (include "imagestream.fullname" .) -}}
{{- end -}}

{{- define "imagestream.leaseNamespace" -}}
{{- default .Release.Namespace .Values.controller.leaderElection.namespace -}}
{{- end -}}

{{/* `host:port` of the integrated registry: the value, else the operator's registry Service. */}}
{{- define "imagestream.integratedRegistryHost" -}}
{{- if .Values.integratedRegistryHost -}}
{{- .Values.integratedRegistryHost -}}
{{- else if .Values.registry.operator -}}
{{- .Values.registry.service.clusterIP | default (printf "image-registry.%s.svc" (include "imagestream.registry.namespace" .)) -}}:5000
{{- end -}}
{{- end -}}

{{/* The Secret and key holding the integrated registry's notification token. */}}
{{- define "imagestream.registry.tokenSecret" -}}
{{- if .Values.registry.notificationToken -}}
{{- include "imagestream.registry.tokenSecretName" . }}:token
{{- else -}}
{{- include "imagestream.generatedSecretName" . }}:registry-notification-token
{{- end -}}
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
{{- if and .Values.registryAccess.clusterImageConfig .Values.watchNamespaces }}
{{- fail "registryAccess.clusterImageConfig needs cluster mode: images.config.openshift.io is cluster-scoped, and namespaced mode grants nothing cluster-wide" }}
{{- end }}
- name: IMAGESTREAM_IMAGE_CONFIG
  value: {{ .Values.registryAccess.clusterImageConfig | quote }}
- name: IMAGESTREAM_IMAGE_CONFIG_NAMESPACE
  value: {{ .Values.registryAccess.trustedCANamespace | quote }}
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

{{/*
The admission webhook's TLS Secret: cert-manager's Certificate writes it with
`admission.certManager.enabled`, otherwise the webhook keeps its own CA in it
(webhook/admission/tls.py). Not a release object either way.
*/}}
{{- define "imagestream.admission.secretName" -}}
{{- printf "%s-admission-tls" (include "imagestream.fullname" .) -}}
{{- end -}}

{{- define "imagestream.admission.hosts" -}}
{{- $service := include "imagestream.webhook.serviceName" . -}}
{{- printf "%s.%s.svc,%s.%s.svc.cluster.local" $service .Release.Namespace $service .Release.Namespace -}}
{{- end -}}

{{- define "imagestream.admission.clientConfig" -}}
service:
  name: {{ .service }}
  namespace: {{ .namespace }}
  port: 443
  path: {{ .path }}
{{- end -}}
{{- define "imagestream.admission.rule" -}}
- apiGroups: [{{ .group | quote }}]
  apiVersions: [{{ .versions }}]
  resources: [{{ .resources }}]
  operations: [CREATE, UPDATE]
  scope: Namespaced
{{- end -}}
