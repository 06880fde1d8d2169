#!/usr/bin/env bash
# run.sh measures Postoffice and, when installed, its peers with the same load
# generator (bench/loadgen) on loopback, and prints markdown tables of medians.
#
#   bench/run.sh                 # full run (about 25 minutes with every peer)
#   RUNS=1 QUICK=1 bench/run.sh  # a smoke run: one run each, small counts
#   ONLY="postoffice mailpit" bench/run.sh
#   POSTOFFICE_BIN=/path/to/postoffice bench/run.sh   # measure a given binary
#   SMTP_ONLY=1 bench/run.sh     # skip the POP3 and IMAP cases
#   IMAP_ONLY=1 bench/run.sh     # only the IMAP cases (Postoffice, Dovecot)
#   BASELINE_BIN=/path/to/old/postoffice bench/run.sh  # also measure an older
#                                # build, as "postoffice-baseline", right after
#                                # postoffice in the same run (SMTP cases)
#   QUIET_WAIT=0 bench/run.sh    # do not wait for a quiet filesystem
#   ONLY=postoffice-shared SHARED_STATS="10000" bench/run.sh  # the shared
#                                # store (PostgreSQL + versitygw, started by
#                                # bench/shared.sh) at these mailbox sizes
#
# Start on a quiet filesystem: ext4 makes file creation slow for about five
# minutes after many files were deleted (its inode allocator skips recently
# freed inodes; see docs/benchmarks.md), which would distort the SMTP cases.
#
# Peers (bench/install-peers.sh installs them; a missing one is skipped):
#   smtp-sink (/usr/sbin/smtp-sink), Dovecot POP3 (/usr/sbin/dovecot),
#   Dovecot IMAP and LMTP (/usr/lib/dovecot/imap, /usr/lib/dovecot/lmtp),
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
ONLY=${ONLY:-postoffice postoffice-shared fsync-files smtp-sink aiosmtpd-nofsync aiosmtpd-fsync mailpit inbucket dovecot}
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
# IMAP: mailbox sizes of the SELECT + FETCH case, messages of the
# BODY.PEEK[] case, deliveries of the IDLE latency case, sessions of the
# IDLE memory case and the size of their mailbox.
IMAP_FETCH=${IMAP_FETCH:-"10000 100000"} NIMAP_BODY=${NIMAP_BODY:-5000} NIMAP_IDLE=${NIMAP_IDLE:-200}
NIMAP_SESS=${NIMAP_SESS:-100} NIMAP_SESS_MSGS=${NIMAP_SESS_MSGS:-10000}
if [ -n "$QUICK" ]; then N1=200 N8=50 N64=5 N1M=3 NPOP=500 STATS="1000 10000"; fi
if [ -n "$QUICK" ]; then IMAP_FETCH="1000 5000" NIMAP_BODY=500 NIMAP_IDLE=20 NIMAP_SESS=20 NIMAP_SESS_MSGS=1000; fi

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
# smtp_pop3: the SMTP and POP3 cases run (not IMAP_ONLY); imap: the IMAP
# cases run (not SMTP_ONLY).
smtp_pop3() { [ -z "${IMAP_ONLY:-}" ]; }
imap() { [ -z "${SMTP_ONLY:-}" ]; }

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
if want postoffice && smtp_pop3; then
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
if [ -n "${BASELINE_BIN:-}" ] && smtp_pop3; then
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
if want fsync-files && smtp_pop3; then
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
if smtp_pop3 && want smtp-sink && [ -x "$SINK" ]; then
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
elif smtp_pop3 && want smtp-sink; then log "smtp-sink not installed: skipped"; fi

# ---- aiosmtpd writing .eml, without and with fsync ----
PY=/usr/bin/python3
if smtp_pop3 && [ -x "$PY" ] && "$PY" -c 'import aiosmtpd' 2>/dev/null; then
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
elif smtp_pop3; then log "python3-aiosmtpd not installed: skipped"; fi

# ---- Mailpit (SQLite) ----
MAILPIT=$(command -v mailpit || echo "$GOBIN_DIR/mailpit")
if smtp_pop3 && want mailpit && [ -x "$MAILPIT" ]; then
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
elif smtp_pop3 && want mailpit; then log "mailpit not installed: skipped"; fi

# ---- Inbucket (file store) ----
INBUCKET=$(command -v inbucket || echo "$GOBIN_DIR/inbucket")
if smtp_pop3 && want inbucket && [ -x "$INBUCKET" ]; then
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
elif smtp_pop3 && want inbucket; then log "inbucket not installed: skipped"; fi

# ---- POP3 last: generating and deleting 100,000-file maildirs leaves ext4
# with many recently freed inodes, which slows every later file creation
# (ext4's inode allocator skips recently deleted inodes); so no SMTP case
# runs after it, and no data directory is removed before the end.
if want postoffice && [ -z "${SMTP_ONLY:-}" ] && smtp_pop3; then
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
if want dovecot && [ -z "${SMTP_ONLY:-}" ] && smtp_pop3 && [ -x /usr/sbin/dovecot ]; then
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
elif want dovecot && smtp_pop3; then log "dovecot not installed: skipped"; fi

# ---- IMAP (issue 15): Postoffice and Dovecot imapd, the same cases ----
# Runs after every other case, for the same reason as POP3 (its large
# generated maildirs). Each server gets the same cases through the hooks
# <prefix>_start (a fresh server process; sets IMAPP, and ISMTPP for the
# SMTP or LMTP delivery port), <prefix>_stop and <prefix>_fill N (stops
# nothing; moves the user's maildir away and generates N 2 KB messages in
# a new one: no index, no dovecot-uidlist, every message in new/).

# tree_pids PID: PID and all its descendants.
tree_pids() {
	ps -e -o pid=,ppid= | awk -v root="$1" '{p[$1] = $2} END {
		for (x in p) { y = x; while (y != root && (y in p) && y > 1) y = p[y]; if (y == root) print x } }'
}
# mem_sum PID: "procs hwm_kb rss_kb pss_kb" summed over PID and its
# descendants (VmHWM and VmRSS of /proc/<pid>/status, Pss of smaps_rollup:
# shared pages divided among the processes sharing them).
mem_sum() {
	local procs=0 hwm=0 rss=0 pss=0 p a b c
	for p in $(tree_pids "$1"); do
		[ -r "/proc/$p/status" ] || continue
		a=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null)
		b=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null)
		c=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
		procs=$((procs + 1)) hwm=$((hwm + ${a:-0})) rss=$((rss + ${b:-0})) pss=$((pss + ${c:-0}))
	done
	echo "$procs $hwm $rss $pss"
}
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# imap_held SERVER CASE PID loadgen-args...: runs loadgen -mode imapidlemany
# with -ready, and while it holds its sessions open records the memory of
# PID's process tree: imap-idle-procs, -hwm, -rss and -pss (MB).
imap_held() {
	local s=$1 cs=$2 pid=$3 ready=$WORK/ready.$RANDOM j m
	shift 3
	rm -f "$ready"
	"$LG" -json -duration "$DUR" -label "$cs" -mode imapidlemany -ready "$ready" "$@" >"$WORK/held.json" 2>>"$OUT/loadgen.err" &
	local lg=$!
	for _ in $(seq 600); do
		[ -e "$ready" ] || ! kill -0 "$lg" 2>/dev/null && break
		sleep 0.1
	done
	if [ -e "$ready" ]; then
		sleep 1 # let the sessions settle
		read -r procs hwm rss pss < <(mem_sum "$pid")
		metric "$s" imap-idle-procs "$procs"
		metric "$s" imap-idle-hwm "$(mb "$hwm")"
		metric "$s" imap-idle-rss "$(mb "$rss")"
		metric "$s" imap-idle-pss "$(mb "$pss")"
		log "   $s $cs: $(cat "$ready" | tr -d '\n') sessions, $procs processes, VmHWM sum $(mb "$hwm") MB, VmRSS sum $(mb "$rss") MB, Pss sum $(mb "$pss") MB"
		rm -f "$ready"
	fi
	wait "$lg" || true
	j=$(cat "$WORK/held.json")
	if [ -z "$j" ]; then
		echo "loadgen failed for $s $cs (see $OUT/loadgen.err)" >&2
		return 0
	fi
	echo "$j" | jq -c --arg s "$s" --arg c "$cs" '. + {server: $s, case: $c}' >>"$RESULTS"
	echo "$j" | jq -r --arg s "$s" --arg c "$cs" \
		'"   \($s) \($c): \(.messages) sessions saw EXISTS, p50 \(.p50_ms*100|floor/100) ms, max \(.max_ms*100|floor/100) ms, errors \(.errors)"' >&2
}

# imap_suite SERVER PREFIX USER TO [LMTP]: every IMAP case against one server.
imap_suite() {
	local s=$1 f=$2 u=$3 to=$4 lmtp=() n i base
	[ -n "${5:-}" ] && lmtp=(-lmtp)
	# 1. SELECT + FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE): the first
	# session of a fresh server on a fresh maildir, then a second one.
	for n in $IMAP_FETCH; do
		for i in $(seq "$RUNS"); do
			"${f}_fill" "$n"
			"${f}_start"
			RUNS=1 measure "$s" "imap-fetch-$n-cold" -mode imapfetch -addr "127.0.0.1:$IMAPP" -user "$u" -msgs 1 -timeout 300s
			RUNS=1 measure "$s" "imap-fetch-$n-warm" -mode imapfetch -addr "127.0.0.1:$IMAPP" -user "$u" -msgs 1 -timeout 300s
			"${f}_stop"
		done
	done
	# 2. UID FETCH 1:* BODY.PEEK[], after one session has seen the mailbox.
	"${f}_fill" "$NIMAP_BODY"
	"${f}_start"
	"$LG" -json -mode imapfetch -addr "127.0.0.1:$IMAPP" -user "$u" -msgs 1 >/dev/null 2>>"$OUT/loadgen.err" || true
	measure "$s" "imap-body-$NIMAP_BODY" -mode imapbody -addr "127.0.0.1:$IMAPP" -user "$u" -size 2048
	"${f}_stop"
	# 3. SMTP (LMTP) 250 to EXISTS in an IDLE session, one delivery at a time.
	"${f}_fill" 0
	"${f}_start"
	measure "$s" imap-idle -mode imapidle -addr "127.0.0.1:$IMAPP" -user "$u" \
		-smtp-addr "127.0.0.1:$ISMTPP" "${lmtp[@]}" -to "$to" -msgs "$NIMAP_IDLE" -size 2048 -duration 600s
	"${f}_stop"
	# 4. NIMAP_SESS sessions in IDLE on one mailbox of NIMAP_SESS_MSGS
	# messages (one SELECT before, so no session pays the first look), one
	# delivery seen by all; memory of the server's processes meanwhile.
	"${f}_fill" "$NIMAP_SESS_MSGS"
	"${f}_start"
	"$LG" -json -mode imapidlemany -conns 1 -addr "127.0.0.1:$IMAPP" -user "$u" >/dev/null 2>>"$OUT/loadgen.err" || true
	sleep 1
	read -r _ _ base _ < <(mem_sum "$IPID")
	metric "$s" imap-base-rss "$(mb "$base")"
	imap_held "$s" "imap-idle-$NIMAP_SESS" "$IPID" -conns "$NIMAP_SESS" -addr "127.0.0.1:$IMAPP" -user "$u" \
		-smtp-addr "127.0.0.1:$ISMTPP" "${lmtp[@]}" -to "$to" -size 2048
	"${f}_stop"
}

if imap && want postoffice; then
	log "postoffice imap"
	PD=$WORK/data/postoffice-imap
	mkdir -p "$PD/mb"
	po_start() {
		local hp pp
		read -r ISMTPP pp IMAPP hp < <(ports 4)
		"$WORK/postoffice" --smtp-addr "127.0.0.1:$ISMTPP" --pop3-addr "127.0.0.1:$pp" \
			--imap-addr "127.0.0.1:$IMAPP" --http-addr "127.0.0.1:$hp" \
			--mailbox-dir "$PD/mb" --hostname bench.local >>"$OUT/postoffice-imap.log" 2>&1 &
		IPID=$!
		PIDS+=("$IPID")
		wait_port "$IMAPP"
	}
	po_stop() { stop "$IPID"; }
	po_fill() { # the default user "user" owns $PD/mb/user
		mv "$PD/mb/user" "$PD/old.$RANDOM$RANDOM" 2>/dev/null || true
		"$LG" -mode maildir -dir "$PD/mb/user" -count "$1" -size 2048 -naming postoffice
		sync
	}
	# A build without IMAP (or whose IMAP waits for its storage) opens no
	# IMAP port: skip it rather than fail the run.
	po_fill 1
	if po_start; then
		po_stop
		imap_suite postoffice po user user@example.com
	else
		po_stop
		log "postoffice opened no IMAP port: IMAP skipped (see $OUT/postoffice-imap.log)"
	fi
fi

if imap && want dovecot && [ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ]; then
	log "dovecot imap"
	DD=$WORK/data/dovecot-imap
	mkdir -p "$DD/run" "$DD/state" "$DD/mail"
	chmod 755 "$WORK" "$WORK/data" "$DD"
	echo "bench:{PLAIN}pass" >"$DD/passwd"
	if [ "$(id -u)" -eq 0 ]; then dme=nobody dgroup=$(id -gn nobody); else dme=$(id -un) dgroup=$(id -gn); fi
	LMTP=()
	[ -x /usr/lib/dovecot/lmtp ] && LMTP=(lmtp)
	# The POP3 instance's settings, for IMAP (and LMTP for the IDLE case):
	# enough processes and per-user connections for the many-sessions case
	# (mail_max_userip_connections defaults to 10), and user names without
	# their domain so that LMTP's bench@example.com is the IMAP user bench.
	dc_start() {
		read -r IMAPP ISMTPP < <(ports 2)
		cat >"$DD/dovecot.conf" <<-EOF
			base_dir = $DD/run
			state_dir = $DD/state
			instance_name = pobench-imap
			protocols = imap ${LMTP[*]}
			listen = 127.0.0.1
			ssl = no
			disable_plaintext_auth = no
			auth_mechanisms = plain
			auth_username_format = %Ln
			log_path = $DD/dovecot.log
			mail_location = maildir:$DD/mail/%u
			first_valid_uid = 0
			default_login_user = dovenull
			default_internal_user = dovecot
			default_process_limit = 1000
			default_client_limit = 4000
			protocol imap {
			  mail_max_userip_connections = 1000
			}
			passdb {
			  driver = passwd-file
			  args = scheme=PLAIN username_format=%u $DD/passwd
			}
			userdb {
			  driver = static
			  args = uid=$dme gid=$dgroup home=$DD/mail/%u
			}
			service imap-login {
			  inet_listener imap {
			    address = 127.0.0.1
			    port = $IMAPP
			  }
			  inet_listener imaps {
			    port = 0
			  }
			}
			service lmtp {
			  unix_listener lmtp {
			    mode = 0600
			  }
			  inet_listener lmtp {
			    address = 127.0.0.1
			    port = $ISMTPP
			  }
			}
			service anvil {
			  chroot =
			}
		EOF
		/usr/sbin/dovecot -F -c "$DD/dovecot.conf" >>"$OUT/dovecot-imap.stdout" 2>&1 &
		IPID=$!
		PIDS+=("$IPID")
		wait_port "$IMAPP"
	}
	dc_stop() {
		/usr/sbin/dovecot -c "$DD/dovecot.conf" stop 2>/dev/null || true
		stop "$IPID"
	}
	dc_fill() {
		mv "$DD/mail/bench" "$DD/old.$RANDOM$RANDOM" 2>/dev/null || true
		"$LG" -mode maildir -dir "$DD/mail/bench" -count "$1" -size 2048 -naming dovecot
		chown -R "$dme:$dgroup" "$DD/mail"
		sync
	}
	imap_suite dovecot dc bench bench@example.com "${LMTP[*]}"
elif imap && want dovecot; then log "dovecot imapd not installed: skipped"; fi

# The shared store (issue 18): bench/shared.sh.
# shellcheck source=bench/shared.sh
. "$ROOT/bench/shared.sh"
if want postoffice-shared && smtp_pop3; then shared_suite; fi

log "report"
{
	echo '```'
	cat "$OUT/machine.txt"
	echo '```'
	echo
	"$LG" -mode report -in "$RESULTS"
} | tee "$OUT/report.md"
echo "results: $RESULTS, report: $OUT/report.md" >&2
