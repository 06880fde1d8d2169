#!/usr/bin/env bash
# run.sh measures Postoffice and, when installed, its peers with the same load
# generator (bench/loadgen) on loopback, and prints markdown tables of medians.
#
#   bench/run.sh                 # full run (about 15 minutes with every peer)
#   RUNS=1 QUICK=1 bench/run.sh  # a smoke run: one run each, small counts
#   ONLY="postoffice mailpit" bench/run.sh
#   POSTOFFICE_BIN=/path/to/postoffice bench/run.sh   # measure a given binary
#   SMTP_ONLY=1 bench/run.sh     # skip the POP3 cases
#   BASELINE_BIN=/path/to/old/postoffice bench/run.sh  # also measure an older
#                                # build, as "postoffice-baseline", right after
#                                # postoffice in the same run (SMTP cases)
#   QUIET_WAIT=0 bench/run.sh    # do not wait for a quiet filesystem
#
# Start on a quiet filesystem: ext4 makes file creation slow for about five
# minutes after many files were deleted (its inode allocator skips recently
# freed inodes; see docs/benchmarks.md), which would distort the SMTP cases.
#
# Peers (bench/install-peers.sh installs them; a missing one is skipped):
#   smtp-sink (/usr/sbin/smtp-sink), Dovecot POP3 (/usr/sbin/dovecot),
#   aiosmtpd .eml writers (python3-aiosmtpd, bench/peers/aiosmtpd_eml.py),
#   mailpit and inbucket ($GOBIN or $(go env GOPATH)/bin or $PATH).
#
# Every server gets a fresh data directory under one temp dir on the
# filesystem of $TMPDIR (default /tmp). Results: $OUT/results.jsonl (one JSON
# record per measurement) and $OUT/report.md; OUT defaults to a new temp dir.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS=${RUNS:-3}
QUICK=${QUICK:-}
ONLY=${ONLY:-postoffice fsync-files smtp-sink aiosmtpd-nofsync aiosmtpd-fsync mailpit inbucket dovecot}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pobench.XXXXXX")
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
GOBIN_DIR=$(go env GOBIN)
GOBIN_DIR=${GOBIN_DIR:-$(go env GOPATH)/bin}
CLK_TCK=$(getconf CLK_TCK)

# Message counts per case (per connection for SMTP). A -duration cap bounds
# every loadgen call; a capped run counts its missing messages as errors.
N1=${N1:-1000} N8=${N8:-250} N64=${N64:-40} N1M=${N1M:-20}
NPOP=${NPOP:-5000}
STATS=${STATS:-"1000 10000 100000"}
DUR=${DUR:-60s}
if [ -n "$QUICK" ]; then N1=200 N8=50 N64=5 N1M=3 NPOP=500 STATS="1000 10000"; fi

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	if [ -z "${KEEP:-}" ]; then
		rm -rf "$WORK/data" "$WORK/postoffice" "$WORK/postoffice-baseline" "$WORK/loadgen"
		rmdir "$WORK" 2>/dev/null || true # empty unless $OUT is inside it
	fi
}
trap cleanup EXIT

log() { echo "== $*" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

log "building postoffice and loadgen"
if [ -n "${POSTOFFICE_BIN:-}" ]; then
	cp "$POSTOFFICE_BIN" "$WORK/postoffice" # a binary built elsewhere
else
	go build -o "$WORK/postoffice" ./cmd/postoffice
fi
go build -o "$WORK/loadgen" ./bench/loadgen
LG=$WORK/loadgen

# machine facts for the report
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "kernel: $(uname -r)"
	echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'))"
	echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "data filesystem: $(df -PT "$WORK" | awk 'NR==2 {print $2 " on " $1 " mounted at " $7}')"
	echo "go: $(go version | awk '{print $3}')"
	echo "postoffice commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ports N: N distinct free loopback ports, space-separated.
ports() { echo $("$LG" -mode ports -count "$1"); }

# wait_port PORT: wait up to 15 s for a listener.
wait_port() {
	for _ in $(seq 150); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "port $1 did not open" >&2
	return 1
}

# dev_io: writes and flushes completed by the data directory's block device
# (fields 5 and 16 of /sys/class/block/<dev>/stat; machine-wide, so other
# programs' I/O in the same seconds counts too). Empty when unknown.
DEV=$(basename "$(df -P "$WORK" | awk 'NR==2 {print $1}')")
dev_io() {
	local f=/sys/class/block/$DEV/stat
	[ -r "$f" ] && awk 'NF >= 17 {print $5, $16}' "$f"
	return 0
}

# cpu_ticks PID: utime+stime of PID (and its threads) in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# hwm_mb PID: peak resident set size (VmHWM) in MB.
hwm_mb() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

metric() { # server case value
	printf '{"server":"%s","case":"%s","mode":"metric","value":%s}\n' "$1" "$2" "$3" >>"$RESULTS"
}

# measure SERVER CASE loadgen-args...: runs loadgen RUNS times, appends records.
measure() {
	local server=$1 cs=$2
	shift 2
	for i in $(seq "$RUNS"); do
		local j
		j=$("$LG" -json -duration "$DUR" -label "$cs" "$@" 2>>"$OUT/loadgen.err" || true)
		if [ -z "$j" ]; then
			echo "loadgen failed for $server $cs (see $OUT/loadgen.err)" >&2
			continue
		fi
		echo "$j" | jq -c --arg s "$server" --arg c "$cs" '. + {server: $s, case: $c}' >>"$RESULTS"
		echo "$j" | jq -r --arg s "$server" --arg c "$cs" --arg i "$i" \
			'"   \($s) \($c) run \($i): \(.msgs_per_sec|floor) msg/s, p50 \(.p50_ms*100|floor/100) ms, p99 \(.p99_ms*100|floor/100) ms, errors \(.errors)"' >&2
	done
}

# dev_metrics SERVER BEFORE AFTER N: the device's writes and flushes per
# message between two dev_io readings, over N messages.
dev_metrics() {
	[ -n "$2" ] && [ -n "$3" ] || return 0
	metric "$1" dev-writes-per-msg "$(awk -v a="$2" -v b="$3" -v n="$4" 'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.3f", (y[1] - x[1]) / n}')"
	metric "$1" dev-flushes-per-msg "$(awk -v a="$2" -v b="$3" -v n="$4" 'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.3f", (y[2] - x[2]) / n}')"
}

# smtp_suite SERVER PORT PID: the four SMTP cases, RSS and CPU.
smtp_suite() {
	local s=$1 p=$2 pid=$3 t0 t1 n
	local a=(-mode smtp -addr "127.0.0.1:$p")
	measure "$s" smtp-2k-1 "${a[@]}" -conns 1 -msgs "$N1" -size 2048
	t0=$(cpu_ticks "$pid")
	d0=$(dev_io)
	measure "$s" smtp-2k-8 "${a[@]}" -conns 8 -msgs "$N8" -size 2048
	t1=$(cpu_ticks "$pid")
	d1=$(dev_io)
	n=$((RUNS * 8 * N8))
	metric "$s" cpu-per-1000 "$(awk -v d=$((t1 - t0)) -v t="$CLK_TCK" -v n=$n 'BEGIN {printf "%.4f", d / t / n * 1000}')"
	dev_metrics "$s" "$d0" "$d1" "$n"
	measure "$s" smtp-2k-64 "${a[@]}" -conns 64 -msgs "$N64" -size 2048
	metric "$s" rss-2k "$(hwm_mb "$pid")"
	measure "$s" smtp-1m-8 "${a[@]}" -conns 8 -msgs "$N1M" -size 1048576
	metric "$s" rss-1m "$(hwm_mb "$pid")"
}

# stop PID: TERM, then KILL after 5 s.
stop() {
	kill "$1" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	kill -9 "$1" 2>/dev/null || true
}

mkdir -p "$WORK/data"

# Wait for a quiet filesystem: for minutes after many files were deleted
# (a previous run's clean-up, other programs' test directories), ext4
# without a journal makes every file creation nearby slow (its inode
# allocator skips recently freed inodes; docs/benchmarks.md). That would
# penalize every server that stores files, and not Mailpit's single
# SQLite file. Probe: 500 file creations in the data directory; wait while
# they average over 0.2 ms (here a quiet block group costs 50-160 us, one
# after a mass deletion 0.4-1.2 ms) or the disk is busy, at most
# QUIET_WAIT seconds (360).
# The probe's files stay until the end: deleting them would slow the next
# probe the same way.
quiet_probe() { # prints the mean creation time in microseconds
	local p t0 t1
	p=$(mktemp -d "$WORK/data/.probe.XXXXXX")
	t0=$(date +%s%N)
	for i in $(seq 500); do : >"$p/$i"; done
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 500000))
}
# The disk must be idle too: after a mass deletion the kernel writes the
# freed inodes and bitmaps back for a while, and a durable server measured
# meanwhile waits behind that. sync(1) starts it now; busy is the share of
# the next 2 s the data disk had requests in flight (field 10 of its stat).
dev_busy() {
	local f=/sys/class/block/$DEV/stat a b
	[ -r "$f" ] || return 0
	a=$(awk '{print $10}' "$f")
	sleep 2
	b=$(awk '{print $10}' "$f")
	echo $(((b - a) / 20))
}
waited=0
while :; do
	sync
	us=$(quiet_probe)
	busy=$(dev_busy)
	[ "$us" -le 200 ] && [ "${busy:-0}" -le 10 ] && break
	if [ "$waited" -ge "${QUIET_WAIT:-360}" ]; then
		log "filesystem still not quiet (file creation ${us} us, disk busy ${busy:-?} %): measuring anyway"
		break
	fi
	log "file creation takes ${us} us, disk busy ${busy:-?} %: waiting for a quiet filesystem ($waited s so far)"
	sleep 30
	waited=$((waited + 30))
done
echo "before the run: file creation ${us} us, disk busy ${busy:-?} % (after waiting ${waited} s)" >>"$OUT/machine.txt"

# ---- Postoffice SMTP ----
if want postoffice; then
	log "postoffice"
	D=$WORK/data/postoffice
	mkdir -p "$D"
	read -r SP PP < <(ports 2)
	"$WORK/postoffice" --smtp-addr "127.0.0.1:$SP" --pop3-addr "127.0.0.1:$PP" \
		--mailbox-dir "$D/mb" --hostname bench.local >"$OUT/postoffice.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	wait_port "$SP"
	smtp_suite postoffice "$SP" "$PID"
	stop "$PID"
fi

# ---- an older Postoffice build, for before/after comparisons ----
if [ -n "${BASELINE_BIN:-}" ]; then
	log "postoffice-baseline ($BASELINE_BIN)"
	cp "$BASELINE_BIN" "$WORK/postoffice-baseline"
	D=$WORK/data/postoffice-baseline
	mkdir -p "$D"
	read -r SP PP < <(ports 2)
	"$WORK/postoffice-baseline" --smtp-addr "127.0.0.1:$SP" --pop3-addr "127.0.0.1:$PP" \
		--mailbox-dir "$D/mb" --hostname bench.local >"$OUT/postoffice-baseline.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	wait_port "$SP"
	smtp_suite postoffice-baseline "$SP" "$PID"
	stop "$PID"
fi

# ---- the no-protocol baseline: one fsync'd file per message ----
# loadgen -mode files: 1, 8 and 64 writers, each message created in tmp/,
# written, fsynced, renamed into new/, new/ fsynced; no server, no sharing.
# Recorded under the SMTP case names, so it is a row of the same table.
if want fsync-files; then
	log "fsync-files (no protocol)"
	D=$WORK/data/fsync-files
	mkdir -p "$D"
	f=(-mode files -dir "$D/md" -size 2048)
	measure fsync-files smtp-2k-1 "${f[@]}" -conns 1 -msgs "$N1"
	d0=$(dev_io)
	measure fsync-files smtp-2k-8 "${f[@]}" -conns 8 -msgs "$N8"
	d1=$(dev_io)
	dev_metrics fsync-files "$d0" "$d1" $((RUNS * 8 * N8))
	measure fsync-files smtp-2k-64 "${f[@]}" -conns 64 -msgs "$N64"
fi

# ---- smtp-sink: discards every message ----
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
if want smtp-sink && [ -x "$SINK" ]; then
	log "smtp-sink"
	read -r SP < <(ports 1)
	# -u: drop privileges when run as root; backlog 256.
	if [ "$(id -u)" -eq 0 ]; then U=(-u nobody); else U=(); fi
	"$SINK" "${U[@]}" "127.0.0.1:$SP" 256 >"$OUT/smtp-sink.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	wait_port "$SP"
	smtp_suite smtp-sink "$SP" "$PID"
	stop "$PID"
elif want smtp-sink; then log "smtp-sink not installed: skipped"; fi

# ---- aiosmtpd writing .eml, without and with fsync ----
PY=/usr/bin/python3
if [ -x "$PY" ] && "$PY" -c 'import aiosmtpd' 2>/dev/null; then
	for variant in nofsync fsync; do
		want "aiosmtpd-$variant" || continue
		log "aiosmtpd-$variant"
		D=$WORK/data/aiosmtpd-$variant
		read -r SP < <(ports 1)
		flag=()
		[ "$variant" = fsync ] && flag=(--fsync)
		"$PY" bench/peers/aiosmtpd_eml.py "$SP" "$D" "${flag[@]}" >"$OUT/aiosmtpd-$variant.log" 2>&1 &
		PID=$!
		PIDS+=("$PID")
		wait_port "$SP"
		smtp_suite "aiosmtpd-$variant" "$SP" "$PID"
		stop "$PID"
		done
else log "python3-aiosmtpd not installed: skipped"; fi

# ---- Mailpit (SQLite) ----
MAILPIT=$(command -v mailpit || echo "$GOBIN_DIR/mailpit")
if want mailpit && [ -x "$MAILPIT" ]; then
	log "mailpit"
	D=$WORK/data/mailpit
	mkdir -p "$D"
	read -r SP HP < <(ports 2)
	# --max 0: keep every message (the default prunes beyond 500).
	"$MAILPIT" --smtp "127.0.0.1:$SP" --listen "127.0.0.1:$HP" --database "$D/mailpit.db" \
		--max 0 >"$OUT/mailpit.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	wait_port "$SP"
	smtp_suite mailpit "$SP" "$PID"
	stop "$PID"
elif want mailpit; then log "mailpit not installed: skipped"; fi

# ---- Inbucket (file store) ----
INBUCKET=$(command -v inbucket || echo "$GOBIN_DIR/inbucket")
if want inbucket && [ -x "$INBUCKET" ]; then
	log "inbucket"
	D=$WORK/data/inbucket
	mkdir -p "$D"
	read -r SP HP PP < <(ports 3)
	INBUCKET_SMTP_ADDR=127.0.0.1:$SP INBUCKET_WEB_ADDR=127.0.0.1:$HP INBUCKET_POP3_ADDR=127.0.0.1:$PP \
		INBUCKET_STORAGE_TYPE=file INBUCKET_STORAGE_PARAMS="path:$D" \
		INBUCKET_STORAGE_MAILBOXMSGCAP=0 INBUCKET_STORAGE_RETENTIONPERIOD=0 \
		INBUCKET_SMTP_MAXMESSAGEBYTES=33554432 INBUCKET_WEB_UIDIR="$D" \
		"$INBUCKET" >"$OUT/inbucket.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	wait_port "$SP"
	smtp_suite inbucket "$SP" "$PID"
	stop "$PID"
elif want inbucket; then log "inbucket not installed: skipped"; fi

# ---- POP3 last: generating and deleting 100,000-file maildirs leaves ext4
# with many recently freed inodes, which slows every later file creation
# (ext4's inode allocator skips recently deleted inodes); so no SMTP case
# runs after it, and no data directory is removed before the end.
if want postoffice && [ -z "${SMTP_ONLY:-}" ]; then
	log "postoffice pop3"
	D=$WORK/data/postoffice-pop3
	mkdir -p "$D"
	read -r SP PP < <(ports 2)
	"$WORK/postoffice" --smtp-addr "127.0.0.1:$SP" --pop3-addr "127.0.0.1:$PP" \
		--mailbox-dir "$D/mb" --hostname bench.local >"$OUT/postoffice-pop3.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	wait_port "$PP"
	# POP3: the default user "user"/"pass" owns $D/mb/user.
	for i in $(seq "$RUNS"); do
		for cs in pop3-retr pop3-retr-dele; do
			mv "$D/mb/user" "$D/old.$RANDOM$RANDOM" 2>/dev/null || true
			"$LG" -mode maildir -dir "$D/mb/user" -count "$NPOP" -size 2048 -naming postoffice
			sync
			extra=()
			[ "$cs" = pop3-retr-dele ] && extra=(-dele)
			RUNS=1 measure postoffice "$cs" -mode pop3 -addr "127.0.0.1:$PP" "${extra[@]}"
		done
	done
	for n in $STATS; do
		mv "$D/mb/user" "$D/old.$RANDOM$RANDOM" 2>/dev/null || true
		"$LG" -mode maildir -dir "$D/mb/user" -count "$n" -size 2048 -naming postoffice
		sync
		RUNS=1 measure postoffice "pop3-stat-$n" -mode pop3stat -addr "127.0.0.1:$PP" -msgs "$RUNS"
	done
	stop "$PID"
fi

# ---- Dovecot POP3 (maildir, passwd-file) ----
if want dovecot && [ -z "${SMTP_ONLY:-}" ] && [ -x /usr/sbin/dovecot ]; then
	log "dovecot"
	D=$WORK/data/dovecot
	mkdir -p "$D/run" "$D/state" "$D/mail"
	chmod 755 "$WORK" "$WORK/data" "$D"
	read -r PP < <(ports 1)
	echo "bench:{PLAIN}pass" >"$D/passwd"
	# Dovecot refuses to access mail as root: give the mail to nobody then.
	if [ "$(id -u)" -eq 0 ]; then me=nobody mygroup=$(id -gn nobody); else me=$(id -un) mygroup=$(id -gn); fi
	cat >"$D/dovecot.conf" <<-EOF
		base_dir = $D/run
		state_dir = $D/state
		instance_name = pobench
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
		    port = $PP
		  }
		}
		service anvil {
		  chroot =
		}
	EOF
	/usr/sbin/dovecot -F -c "$D/dovecot.conf" >"$OUT/dovecot.stdout" 2>&1 &
	PID=$!
	PIDS+=("$PID")
	wait_port "$PP"
	for i in $(seq "$RUNS"); do
		for cs in pop3-retr pop3-retr-dele; do
			mv "$D/mail/bench" "$D/old.$RANDOM$RANDOM" 2>/dev/null || true
			"$LG" -mode maildir -dir "$D/mail/bench" -count "$NPOP" -size 2048 -naming dovecot
			chown -R "$me:$mygroup" "$D/mail"
			sync
			extra=()
			[ "$cs" = pop3-retr-dele ] && extra=(-dele)
			RUNS=1 measure dovecot "$cs" -mode pop3 -addr "127.0.0.1:$PP" -user bench "${extra[@]}"
		done
	done
	for n in $STATS; do
		mv "$D/mail/bench" "$D/old.$RANDOM$RANDOM" 2>/dev/null || true
		"$LG" -mode maildir -dir "$D/mail/bench" -count "$n" -size 2048 -naming dovecot
		chown -R "$me:$mygroup" "$D/mail"
		sync
		RUNS=1 measure dovecot "pop3-stat-$n" -mode pop3stat -addr "127.0.0.1:$PP" -user bench -msgs "$RUNS"
	done
	/usr/sbin/dovecot -c "$D/dovecot.conf" stop 2>/dev/null || stop "$PID"
	stop "$PID"
elif want dovecot; then log "dovecot not installed: skipped"; fi

log "report"
{
	echo '```'
	cat "$OUT/machine.txt"
	echo '```'
	echo
	"$LG" -mode report -in "$RESULTS"
} | tee "$OUT/report.md"
echo "results: $RESULTS, report: $OUT/report.md" >&2
