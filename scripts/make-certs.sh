#!/bin/sh
# A private test CA and a server certificate for the secure profile (local use only).
#
#   scripts/make-certs.sh [OUTDIR] [EXTRA_HOST...]
#
# Writes into OUTDIR (default: secrets/, ignored by git):
#   ca.crt       the CA certificate clients trust (--ca-file / LAPCAST_MQTT_CA_FILE)
#   ca.key       the CA's private key (kept to re-issue the server certificate)
#   server.crt   the broker's certificate, valid for 127.0.0.1, ::1, localhost and EXTRA_HOSTs
#   server.key   the broker's private key
# An existing CA is kept (clients already trust it); the server certificate is re-issued.
# Keys are created with mode 600 and must never be committed.
set -eu

out=${1:-secrets}
[ $# -gt 0 ] && shift
days=${LAPCAST_CERT_DAYS:-365}

command -v openssl >/dev/null 2>&1 || {
    echo "make-certs: openssl not found (apt-get install -y openssl)" >&2
    exit 1
}

umask 077
mkdir -p "$out"

# Subject alternative names: Python's ssl (and Mosquitto's clients) check these, not the CN.
san="DNS:localhost,IP:127.0.0.1,IP:::1"
for host in "$@"; do
    case $host in
        *[!0-9.]*) case $host in *:*) san="$san,IP:$host" ;; *) san="$san,DNS:$host" ;; esac ;;
        *) san="$san,IP:$host" ;;
    esac
done

if [ ! -s "$out/ca.key" ] || [ ! -s "$out/ca.crt" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$out/ca.key" -out "$out/ca.crt" -days "$days" -sha256 \
        -subj "/O=lapcast/CN=lapcast private test CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$out/server.key" -out "$out/server.csr" \
    -subj "/O=lapcast/CN=localhost" 2>/dev/null

ext="$out/server.ext"
cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -CAserial "$out/ca.srl" -out "$out/server.crt" -days "$days" -sha256 \
    -extfile "$ext" 2>/dev/null
rm -f "$out/server.csr" "$ext"

# Certificates are public; keys stay readable by their owner only (Mosquitto runs as you).
chmod 644 "$out/ca.crt" "$out/server.crt"
chmod 600 "$out/ca.key" "$out/server.key"
openssl verify -CAfile "$out/ca.crt" "$out/server.crt" >/dev/null
echo "make-certs: CA $out/ca.crt, server certificate $out/server.crt ($san)"
