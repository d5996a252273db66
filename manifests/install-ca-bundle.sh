#!/usr/bin/env bash
# Load certificates made by `otel-injector certs` (or your own CA) into the
# cluster: bring your own certificate. Not needed with self-managed TLS, the
# default, which makes and renews its own; it accepts a certificate loaded
# here, renews it when it nears expiry if `otel-injector certs` made it, and
# leaves one from another CA to you (docs/self-managed-tls.md).
#   1. set both webhooks' caBundle to base64(ca.crt), followed by the CA it
#      replaces (see below);
#   2. create or update Secret otel-injector-tls (tls.crt, tls.key, ca.crt) that the
#      Deployment mounts at /certs (running pods pick it up within ~5 s,
#      once the kubelet has synced the Secret volume).
#
# Usage: manifests/install-ca-bundle.sh [CERTS_DIR]   (default: certs/)
# Env:   KUBECTL (default kubectl), NAMESPACE (default otel-injector),
#        KEEP_PREVIOUS_CA (default 1; 0 drops the previous CA at once).
#
# Run it after the first `kubectl apply -k manifests/`, and again to rotate the
# certificates. Re-applying the manifests leaves caBundle alone (webhook.yaml
# does not name it).
set -euo pipefail

CERTS_DIR="${1:-certs}"
NAMESPACE="${NAMESPACE:-otel-injector}"
KUBECTL="${KUBECTL:-kubectl}"
SECRET=otel-injector-tls
WEBHOOK=otel-injector

for f in ca.crt tls.crt tls.key; do
  if [[ ! -s "${CERTS_DIR}/${f}" ]]; then
    echo "error: ${CERTS_DIR}/${f} is missing or empty;" \
      "create it with: cargo run --release -- certs --out ${CERTS_DIR}/ --service otel-injector --namespace ${NAMESPACE}" >&2
    exit 1
  fi
done

# 1. caBundle first: the new CA, followed by the CA it replaces (the first
#    certificate of the bundle installed now, when it differs). The API server
#    then trusts both the certificate the pods still serve, until the kubelet
#    has refreshed their Secret volume, and the new one: a rotation fails no
#    webhook call. The previous CA stays trusted until the next rotation (its
#    private key was never kept); KEEP_PREVIOUS_CA=0 drops it at once, e.g.
#    after a key compromise, at the cost of failed calls (pods created
#    uninstrumented) until every pod serves the new certificate.
# "add" rather than "replace": after a fresh apply the field does not exist
# (webhook.yaml does not set it), so "replace" would fail; "add" on an object
# member creates or overwrites it.
# Portable single-line base64 (GNU `base64 -w0` does not exist on macOS).
NEW_CA="$(cat "${CERTS_DIR}/ca.crt")"
BUNDLE="${NEW_CA}"
if [[ "${KEEP_PREVIOUS_CA:-1}" != 0 ]]; then
  CURRENT="$("${KUBECTL}" get mutatingwebhookconfiguration "${WEBHOOK}" \
    -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null || true)"
  PREVIOUS=""
  if [[ -n "${CURRENT}" ]]; then
    PREVIOUS="$(printf '%s' "${CURRENT}" | base64 -d 2>/dev/null \
      | awk '/-----BEGIN CERTIFICATE-----/ { n++ } n == 1 { print } n == 1 && /-----END CERTIFICATE-----/ { exit }')"
  fi
  if [[ -n "${PREVIOUS}" && "${PREVIOUS}" != "${NEW_CA}" ]]; then
    echo "Keeping the previous CA in caBundle beside the new one"
    BUNDLE="${NEW_CA}"$'\n'"${PREVIOUS}"
  fi
fi
CA_BUNDLE="$(printf '%s\n' "${BUNDLE}" | base64 | tr -d '\n')"

echo "Patching caBundle of both webhooks in MutatingWebhookConfiguration ${WEBHOOK}"
"${KUBECTL}" patch mutatingwebhookconfiguration "${WEBHOOK}" --type=json -p "[
  {\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"${CA_BUNDLE}\"},
  {\"op\":\"add\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"${CA_BUNDLE}\"}
]"

# 2. The Secret the pods mount at /certs; they serve its certificate within
#    ~5 s of the kubelet updating the volume, without a restart.
#    With ca.crt too (cert-manager's layout): self-managed TLS, the default,
#    reads it to check that caBundle trusts the Secret, and would otherwise
#    see an unusable Secret and replace it.
echo "Applying Secret ${NAMESPACE}/${SECRET} from ${CERTS_DIR}/tls.crt, tls.key and ca.crt"
"${KUBECTL}" create secret generic "${SECRET}" \
  --namespace "${NAMESPACE}" \
  --type kubernetes.io/tls \
  --from-file "tls.crt=${CERTS_DIR}/tls.crt" \
  --from-file "tls.key=${CERTS_DIR}/tls.key" \
  --from-file "ca.crt=${CERTS_DIR}/ca.crt" \
  --dry-run=client -o yaml | "${KUBECTL}" apply -f -

echo "Done."
