#!/usr/bin/env bash
# openssl-steps.sh: a Truce mission PKI made with plain openssl, instead of
# truce-certs. It makes the same files, with the same profiles, so the
# server and the agents use them exactly as they use truce-certs' output.
# README.md walks through each step; tests/openssl_steps.rs runs this
# script and checks the results with rustls.
#
# Usage:
#   openssl-steps.sh DIR init [SANS]   the CA, the server certificate, an empty CRL
#   openssl-steps.sh DIR client NAME   a laptop's key and certificate
#   openssl-steps.sh DIR revoke NAME   put NAME's certificate on the CRL
#   openssl-steps.sh DIR crl           reissue the CRL (before its nextUpdate)
#
# SANS are the server's names in openssl syntax; the default is
# "DNS:localhost,IP:127.0.0.1". CA_SUBJECT overrides the CA's name (default
# "/O=Mission/CN=Mission Truce CA").
#
# Files in DIR: ca.pem ca.key server.pem server.key crl.pem NAME.pem NAME.key
# (keys are PKCS#8 PEM, mode 0600), and openssl's CA records: ca.cnf,
# index.txt, crlnumber, issued/, *.csr. Needs OpenSSL 1.1.1 or 3.x.

set -euo pipefail

die() { echo "openssl-steps.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: openssl-steps.sh DIR init [SANS] | DIR client NAME | DIR revoke NAME | DIR crl"
DIR=$1
STEP=$2
shift 2

# --- step 0: the openssl configuration of the mission CA -------------------
# `openssl ca` keeps a database of what it issued (to revoke and to make the
# CRL); the [*_ext] sections are the certificate profiles Truce needs.
write_config() {
    local sans=$1
    cat > ca.cnf <<EOF
[ ca ]
default_ca = mission_ca

[ mission_ca ]
# Every certificate issued, and whether it is revoked.
database         = index.txt
# A copy of each issued certificate, named by serial.
new_certs_dir    = issued
certificate      = ca.pem
private_key      = ca.key
# With a crlnumber file, CRLs are X.509 v2 with a CRL number (webpki needs v2).
crlnumber        = crlnumber
crl_extensions   = crl_ext
# Random positive serial numbers.
rand_serial      = yes
default_md       = sha256
default_days     = 730
# The server refuses a CRL past its nextUpdate: reissue it (the crl step)
# before these 30 days are up, so a CRL kept from being replaced goes stale.
default_crl_days = 30
policy           = policy_cn
unique_subject   = no
# Extensions come from this file only, never from a CSR.
copy_extensions  = none
email_in_dn      = no

[ policy_cn ]
commonName = supplied

[ req ]
distinguished_name = req_dn

[ req_dn ]

[ ca_ext ]
basicConstraints       = critical, CA:true, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash

[ server_ext ]
basicConstraints       = critical, CA:false
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
# rustls checks the server's name against these, never against the CN.
subjectAltName         = ${sans}
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ client_ext ]
basicConstraints       = critical, CA:false
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ crl_ext ]
authorityKeyIdentifier = keyid:always
EOF
}

# An EC P-256 private key, PKCS#8 PEM (what genpkey writes), mode 0600.
new_key() {
    (umask 077 && openssl genpkey -algorithm EC \
        -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve \
        -out "$1")
}

# An hour ago, so that a peer whose clock is a little behind accepts a new
# certificate (GNU date, then BSD date).
an_hour_ago() {
    date -u -d '1 hour ago' +%Y%m%d%H%M%SZ 2>/dev/null || date -u -v-1H +%Y%m%d%H%M%SZ
}

# Signs CSR $1 into certificate $2 with profile $3, valid 730 days.
sign() {
    openssl ca -config ca.cnf -batch -notext -extensions "$3" \
        -startdate "$(an_hour_ago)" -days 730 -in "$1" -out "$2"
}

refuse_existing() {
    for f in "$@"; do
        [ ! -e "$f" ] || die "$DIR/$f already exists: refusing to overwrite it"
    done
}

mkdir -p -m 700 "$DIR"
cd "$DIR"

case $STEP in
init)
    SANS=${1:-DNS:localhost,IP:127.0.0.1}
    refuse_existing ca.key ca.pem server.key server.pem crl.pem
    write_config "$SANS"
    mkdir -p issued
    : > index.txt
    echo 01 > crlnumber

    # --- step 1: the CA key and self-signed certificate, 10 years ---------
    new_key ca.key
    openssl req -config ca.cnf -new -x509 -key ca.key -sha256 -days 3650 \
        -subj "${CA_SUBJECT:-/O=Mission/CN=Mission Truce CA}" \
        -extensions ca_ext -out ca.pem

    # --- step 2: the server key, CSR and certificate (serverAuth, SANs) ---
    new_key server.key
    openssl req -config ca.cnf -new -key server.key -subj "/CN=Truce server" \
        -out server.csr
    sign server.csr server.pem server_ext

    # --- step 3: the first CRL, empty -------------------------------------
    openssl ca -config ca.cnf -gencrl -out crl.pem
    ;;
client)
    NAME=${1:-}
    [[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] \
        || die "invalid client name '$NAME': use 1 to 64 letters, digits, '.', '_' or '-'"
    refuse_existing "$NAME.key" "$NAME.pem"

    # --- step 4: a laptop's key, CSR and certificate (clientAuth, CN=NAME)
    new_key "$NAME.key"
    openssl req -config ca.cnf -new -key "$NAME.key" -subj "/CN=$NAME" \
        -out "$NAME.csr"
    sign "$NAME.csr" "$NAME.pem" client_ext
    ;;
revoke)
    NAME=${1:-}
    [ -f "$NAME.pem" ] || die "no certificate $DIR/$NAME.pem to revoke"

    # --- step 5: revoke a laptop and reissue the CRL ----------------------
    openssl ca -config ca.cnf -revoke "$NAME.pem"
    openssl ca -config ca.cnf -gencrl -out crl.pem
    ;;
crl)
    # --- step 6: reissue the CRL before its nextUpdate --------------------
    openssl ca -config ca.cnf -gencrl -out crl.pem
    ;;
*)
    die "unknown step '$STEP': use init, client, revoke or crl"
    ;;
esac
