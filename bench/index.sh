#!/usr/bin/env bash
# index.sh measures the persistent index (issue 16) on big mailboxes of 2 KB
# messages generated directly as files (words with Zipf frequencies, so that
# text searches have realistic hit counts), beside Dovecot's POP3 and
# Mailpit's search on the same messages:
#
#   POP3 login+STAT: the first login with no index (Postoffice builds it,
#     Dovecot builds dovecot.index), then warm logins;
#   the index build (every message read into the full-text index) and the
#     index size on disk per message;
#   the web API's first page after a restart, text search p50/p99;
#   the peak RSS of the server;
#   SMTP deliveries/s at 8 connections with indexing on and off.
#
#   SIZES="100000 1000000" OUT=dir bash bench/index.sh
#   PEERS="postoffice dovecot" ...   # skip Mailpit (its 100,000 searches take minutes)
#
# Needs jq and curl; Dovecot (/usr/sbin/dovecot) and Mailpit (mailpit on
# $PATH or in $(go env GOPATH)/bin) are skipped when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES-"100000 1000000"} # empty: only the SMTP case
OUT=${OUT:-bench/published/$(date +%F)/index}
QUERIES=${QUERIES:-200}
WARM=${WARM:-5}
SMTP_DUR=${SMTP_DUR:-20s}
PEERS=${PEERS:-"postoffice mailpit dovecot"} # which servers to measure
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /var/tmp/po-index-bench.XXXXXX)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "== $*" >&2; }
metric() { # server case value unit
	jq -nc --arg s "$1" --arg c "$2" --argjson v "$3" --arg u "$4" '{server: $s, case: $c, value: $v, unit: $u}' >>"$RESULTS"
	echo "   $1 $2: $3 $4" >&2
}

go build -o "$WORK/postoffice" ./cmd/postoffice
go build -o "$WORK/lg" ./bench/loadgen
LG=$WORK/lg
MAILPIT=$(command -v mailpit || echo "$(go env GOPATH)/bin/mailpit")

ports() { echo $("$LG" -mode ports -count "$1"); }
wait_port() {
	for _ in $(seq 600); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "port $1 did not open" >&2
	return 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
rss_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# pop3stat SERVER CASE PORT USER N: N logins+STAT, median in ms.
pop3stat() {
	local j
	j=$("$LG" -json -mode pop3stat -addr "127.0.0.1:$3" -user "$4" -msgs "$5")
	metric "$1" "$2" "$(echo "$j" | jq '.p50_ms*10|floor/10')" ms
}

po_start() { # DIR PORTS... extra flags
	local dir=$1
	shift
	"$WORK/postoffice" --mailbox-dir "$dir" --smtp-addr "127.0.0.1:$SP" --pop3-addr "127.0.0.1:$PP" \
		--imap-addr "127.0.0.1:$IP" --http-addr "127.0.0.1:$HP" --hostname bench.local "$@" >>"$OUT/postoffice.log" 2>&1 &
	PO=$!
	PIDS+=("$PO")
	wait_port "$HP"
}

# imapfetch SERVER CASE IMAP_PORT: one session of SELECT INBOX and FETCH 1:*
# (UID FLAGS RFC822.SIZE ENVELOPE): the SELECT and the FETCH in ms.
imapfetch() {
	local j
	j=$("$LG" -json -mode imapfetch -addr "127.0.0.1:$3" -user user -msgs 1 -timeout 300s)
	metric "$1" "$2-select" "$(echo "$j" | jq '.select_ms*10|floor/10')" ms
	metric "$1" "$2-fetch" "$(echo "$j" | jq '.fetch_ms*10|floor/10')" ms
}

# search_times SERVER CASE URL_PREFIX: QUERIES searches, p50 and p99 in ms.
search_times() {
	local server=$1 cs=$2 prefix=$3 f=$WORK/times.$RANDOM
	: >"$f"
	local i=0
	while read -r q; do
		curl -s -o /dev/null -w '%{time_total}\n' "$prefix$(jq -rn --arg q "$q" '$q|@uri')" >>"$f"
		i=$((i + 1))
		[ "$i" -ge "$QUERIES" ] && break
	done <"$WORK/queries"
	sort -n "$f" >"$f.s"
	local n
	n=$(wc -l <"$f.s")
	metric "$server" "$cs-p50" "$(ms "$(sed -n "$(((n + 1) / 2))p" "$f.s")")" ms
	metric "$server" "$cs-p99" "$(ms "$(sed -n "$(((n * 99 + 99) / 100))p" "$f.s")")" ms
}

# The queries: words of ranks spread from common to rare, and prefixes.
"$LG" -mode vocab -count "$QUERIES" >"$WORK/queries"

for n in $SIZES; do
	if [[ " $PEERS " == *" postoffice "* ]]; then
	log "postoffice, $n messages"
	D=$WORK/po-$n
	"$LG" -mode maildir -dir "$D/user" -count "$n" -size 2048 -words -naming postoffice
	sync
	read -r SP PP IP HP < <(ports 4)
	po_start "$D"
	# The first login finds no index: the rows are built from the
	# directory listing (one stat per file), then served.
	pop3stat postoffice "pop3-stat-cold-$n" "$PP" user 1
	pop3stat postoffice "pop3-stat-warm-$n" "$PP" user "$WARM"
	# The full-text index: the first text search waits for every message
	# to be read into it (the background indexer is at it meanwhile).
	t0=$(date +%s.%N)
	curl -s -o /dev/null "http://127.0.0.1:$HP/api/v1/mailboxes/user/messages?q=text:kakaka"
	t1=$(date +%s.%N)
	metric postoffice "index-build-rate-$n" "$(awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN {printf "%.0f", n / (b - a)}')" msg/s
	sync
	metric postoffice "index-bytes-per-msg-$n" "$(du -sb "$D/.index" | awk -v n="$n" '{printf "%.0f", $1 / n}')" B
	metric postoffice "peak-rss-build-$n" "$(rss_mib "$PO")" MiB
	stop "$PO"
	# After a restart: the first page, then searches.
	po_start "$D"
	t=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$HP/api/v1/mailboxes/user/messages?per_page=50")
	metric postoffice "web-first-page-after-restart-$n" "$(ms "$t")" ms
	pop3stat postoffice "pop3-stat-after-restart-$n" "$PP" user "$WARM"
	search_times postoffice "web-search-$n" "http://127.0.0.1:$HP/api/v1/mailboxes/user/messages?per_page=50&q="
	metric postoffice "peak-rss-serve-$n" "$(rss_mib "$PO")" MiB
	stop "$PO"
	# IMAP's first FETCH ENVELOPE of the folder in a fresh process, with
	# the index complete (ENVELOPE read from it), then a second session.
	po_start "$D"
	imapfetch postoffice "imap-fetch-after-restart-$n" "$IP"
	imapfetch postoffice "imap-fetch-warm-$n" "$IP"
	metric postoffice "peak-rss-imap-$n" "$(rss_mib "$PO")" MiB
	stop "$PO"
	# Again in a fresh process, now that the folder has its UID list: the
	# sizes and dates of SELECT come from the index, not a stat a file.
	po_start "$D"
	imapfetch postoffice "imap-fetch-second-restart-$n" "$IP"
	stop "$PO"
	# The cold first login after the index is deleted.
	rm -rf "$D/.index"
	sync
	po_start "$D"
	pop3stat postoffice "pop3-stat-index-deleted-$n" "$PP" user 1
	# Every size and date stat'ed, every ENVELOPE parsed from its file (the
	# indexer has not read them yet).
	imapfetch postoffice "imap-fetch-index-deleted-$n" "$IP"
	stop "$PO"

	if [[ " $PEERS " == *" mailpit "* ]] && [ -x "$MAILPIT" ] && [ "$n" -le 100000 ]; then
		log "mailpit, the same $n messages"
		read -r MSP MHP < <(ports 2)
		"$MAILPIT" --smtp "127.0.0.1:$MSP" --listen "127.0.0.1:$MHP" --database "$WORK/mailpit-$n.db" \
			--max 0 >"$OUT/mailpit.log" 2>&1 &
		MP=$!
		PIDS+=("$MP")
		wait_port "$MHP"
		t0=$(date +%s.%N)
		"$MAILPIT" ingest -S "127.0.0.1:$MSP" "$D/user/new" >>"$OUT/mailpit.log" 2>&1
		t1=$(date +%s.%N)
		metric mailpit "ingest-rate-$n" "$(awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN {printf "%.0f", n / (b - a)}')" msg/s
		search_times mailpit "web-search-$n" "http://127.0.0.1:$MHP/api/v1/search?limit=50&query="
		metric mailpit "peak-rss-serve-$n" "$(rss_mib "$MP")" MiB
		stop "$MP"
	fi
	rm -rf "$D"
	fi

	if [[ " $PEERS " == *" dovecot "* ]] && [ -x /usr/sbin/dovecot ]; then
		log "dovecot, $n messages"
		D=$WORK/dovecot-$n
		mkdir -p "$D/run" "$D/state" "$D/mail"
		chmod 755 "$WORK" "$D"
		read -r DP < <(ports 1)
		echo "bench:{PLAIN}pass" >"$D/passwd"
		if [ "$(id -u)" -eq 0 ]; then me=nobody mygroup=$(id -gn nobody); else me=$(id -un) mygroup=$(id -gn); fi
		cat >"$D/dovecot.conf" <<-EOF
			base_dir = $D/run
			state_dir = $D/state
			instance_name = poindex
			protocols = pop3
			listen = 127.0.0.1
			ssl = no
			disable_plaintext_auth = no
			auth_mechanisms = plain
			log_path = $D/dovecot.log
			mail_location = maildir:$D/mail/%u
			first_valid_uid = 0
			default_login_user = dovenull
			default_internal_user = dovecot
			pop3_uidl_format = %08Xu%08Xv
			passdb {
			  driver = passwd-file
			  args = scheme=PLAIN username_format=%u $D/passwd
			}
			userdb {
			  driver = static
			  args = uid=$me gid=$mygroup home=$D/mail/%u
			}
			service pop3-login {
			  inet_listener pop3 {
			    address = 127.0.0.1
			    port = $DP
			  }
			}
			service anvil {
			  chroot =
			}
			# The default (256 MB) is too small for a maildrop of 1,000,000
			# messages: pop3 dies with "Out of memory".
			service pop3 {
			  vsz_limit = 4G
			}
		EOF
		"$LG" -mode maildir -dir "$D/mail/bench" -count "$n" -size 2048 -words -naming dovecot
		chown -R "$me:$mygroup" "$D/mail"
		sync
		/usr/sbin/dovecot -F -c "$D/dovecot.conf" >"$OUT/dovecot.stdout" 2>&1 &
		DV=$!
		PIDS+=("$DV")
		wait_port "$DP"
		pop3stat dovecot "pop3-stat-cold-$n" "$DP" bench 1
		pop3stat dovecot "pop3-stat-warm-$n" "$DP" bench "$WARM"
		/usr/sbin/dovecot -c "$D/dovecot.conf" stop 2>/dev/null || true
		stop "$DV"
		rm -rf "$D"
	fi
done

log "SMTP at 8 connections, indexing on and off"
for run in 1 2; do
	[[ " $PEERS " == *" postoffice "* ]] || break
	for mode in on off; do
		D=$WORK/smtp-$mode-$run
		read -r SP PP IP HP < <(ports 4)
		extra=()
		[ "$mode" = off ] && extra=(--index-disable)
		po_start "$D" "${extra[@]}"
		j=$("$LG" -json -mode smtp -addr "127.0.0.1:$SP" -conns 8 -duration "$SMTP_DUR" -size 2048)
		metric postoffice "smtp-8conn-index-$mode-run$run" "$(echo "$j" | jq '.msgs_per_sec|floor')" msg/s
		stop "$PO"
		rm -rf "$D"
	done
done
log "results in $RESULTS"
