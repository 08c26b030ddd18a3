#!/bin/sh
# Sign an hfl1 license with stock OpenSSL (no licensegen needed).
#   openssl-sign.sh KID PRIVATE_KEY.pem PAYLOAD.json > license.key
# The private key comes from `openssl genpkey -algorithm ed25519 -out key.pem`;
# installs trust `openssl pkey -in key.pem -pubout` under KID.
set -eu
kid=$1 key=$2 payload=$3
b64url() { basenc --base64url -w0 | tr -d '='; }
msg=$(mktemp) && trap 'rm -f "$msg"' EXIT
printf 'hfl1.%s.%s' "$kid" "$(b64url < "$payload")" > "$msg"
sig=$(openssl pkeyutl -sign -inkey "$key" -rawin -in "$msg" | b64url)
printf '%s.%s\n' "$(cat "$msg")" "$sig"
