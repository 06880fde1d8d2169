#!/usr/bin/env bash
# install-peers.sh installs the servers bench/run.sh compares Postoffice with.
# It needs root for apt-get and network access to the Debian mirror and the Go
# module proxy. CI never runs it; bench/run.sh skips any peer that is missing.
#
#   Postfix smtp-sink   Debian "postfix"        -> /usr/sbin/smtp-sink
#   Dovecot POP3        Debian "dovecot-pop3d"  -> /usr/sbin/dovecot
#   Dovecot IMAP        Debian "dovecot-imapd"  -> /usr/lib/dovecot/imap
#   Dovecot LMTP        Debian "dovecot-lmtpd"  -> /usr/lib/dovecot/lmtp (delivers
#                       for Dovecot's IMAP IDLE latency case)
#   aiosmtpd            Debian "python3-aiosmtpd"
#   Mailpit             go install github.com/axllent/mailpit@v1.33.1
#   Inbucket            go install github.com/inbucket/inbucket/v3/cmd/inbucket@v3.2.0
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=900 update
# postfix asks questions on install; preseed "No configuration" and keep the
# daemon from starting (we only need the smtp-sink binary).
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends postfix dovecot-pop3d dovecot-imapd dovecot-lmtpd python3-aiosmtpd
# Debian starts the services it installs; the benchmark runs its own copies on
# high ports, so stop the system ones when a service manager is present.
for svc in postfix dovecot; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
		$SUDO systemctl stop "$svc" || true
	fi
done

GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
export GOBIN
go install github.com/axllent/mailpit@v1.33.1
go install github.com/inbucket/inbucket/v3/cmd/inbucket@v3.2.0
echo "installed: $(command -v smtp-sink || echo /usr/sbin/smtp-sink) /usr/sbin/dovecot $GOBIN/mailpit $GOBIN/inbucket"
