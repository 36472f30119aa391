#!/usr/bin/env bash
# Makes the Ed25519 key pair of caller assertions: the gateway signs, for every call to a
# service, who the call is for with the private key (IDENTITY_SIGNING_KEY); every service
# verifies with the public key (IDENTITY_PUBLIC_KEY) and refuses calls without a valid assertion.
# Keys are one line each: base64 of the DER (PKCS#8 private key, SubjectPublicKeyInfo public key).
#
#   bash deploy/scripts/identity-keys.sh env >> .env          # compose: append both to .env
#   bash deploy/scripts/identity-keys.sh k8s autocrea         # Kubernetes: the Secret
#       autocrea-identity in namespace autocrea (both keys: the gateway reads signing-key, the
#       services public-key) and in autocrea-sandbox (the public key only)
#   bash deploy/scripts/identity-keys.sh public < signing.b64 # the public key of a private key
#
# Rotation: make a new pair; give the services both public keys, comma-separated
# (IDENTITY_PUBLIC_KEY=<new>,<old>) and roll them; switch the gateway to the new private key; then
# drop the old public key. Requires the openssl command.
set -euo pipefail
command -v openssl >/dev/null || { echo "identity-keys: openssl is needed (apt-get install openssl)" >&2; exit 1; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
chmod 700 "$dir"

public_of() { openssl pkey -inform DER -in "$1" -pubout -outform DER | base64 -w0; }

case "${1:-env}" in
    env | k8s)
        openssl genpkey -algorithm ed25519 -outform DER -out "$dir/signing.der" 2>/dev/null
        signing=$(base64 -w0 <"$dir/signing.der")
        public=$(public_of "$dir/signing.der")
        if [ "${1:-env}" = env ]; then
            echo "IDENTITY_SIGNING_KEY=$signing"
            echo "IDENTITY_PUBLIC_KEY=$public"
        else
            namespace=${2:?usage: identity-keys.sh k8s NAMESPACE}
            kubectl -n "$namespace" create secret generic autocrea-identity \
                --from-literal=signing-key="$signing" --from-literal=public-key="$public"
            kubectl -n "$namespace-sandbox" create secret generic autocrea-identity \
                --from-literal=public-key="$public"
        fi
        ;;
    public)
        base64 -d >"$dir/signing.der"
        public_of "$dir/signing.der"
        echo
        ;;
    *)
        echo "usage: identity-keys.sh env | k8s NAMESPACE | public" >&2
        exit 2
        ;;
esac
