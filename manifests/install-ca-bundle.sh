#!/usr/bin/env bash
# Load certificates made by `otel-injector certs` into the cluster (the
# non-cert-manager option):
#   1. create or update Secret otel-injector-tls (tls.crt, tls.key) that the
#      Deployment mounts at /certs (running pods pick it up within ~5 s,
#      once the kubelet has synced the Secret volume);
#   2. set both webhooks' caBundle to base64(ca.crt).
#
# Usage: manifests/install-ca-bundle.sh [CERTS_DIR]   (default: certs/)
# Env:   KUBECTL (default kubectl), NAMESPACE (default otel-injector).
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

echo "Applying Secret ${NAMESPACE}/${SECRET} from ${CERTS_DIR}/tls.crt and ${CERTS_DIR}/tls.key"
"${KUBECTL}" create secret tls "${SECRET}" \
  --namespace "${NAMESPACE}" \
  --cert "${CERTS_DIR}/tls.crt" \
  --key "${CERTS_DIR}/tls.key" \
  --dry-run=client -o yaml | "${KUBECTL}" apply -f -

# "add" rather than "replace": after a fresh apply the field does not exist
# (webhook.yaml does not set it), so "replace" would fail; "add" on an object
# member creates or overwrites it.
# Portable single-line base64 (GNU `base64 -w0` does not exist on macOS).
CA_BUNDLE="$(base64 < "${CERTS_DIR}/ca.crt" | tr -d '\n')"

echo "Patching caBundle of both webhooks in MutatingWebhookConfiguration ${WEBHOOK}"
"${KUBECTL}" patch mutatingwebhookconfiguration "${WEBHOOK}" --type=json -p "[
  {\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"${CA_BUNDLE}\"},
  {\"op\":\"add\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"${CA_BUNDLE}\"}
]"

echo "Done."
