# shared.sh: the shared store's cases of bench/run.sh (issue 18), sourced by
# it after the Maildir cases: Postoffice with --store postgres on a
# PostgreSQL cluster and a versitygw S3 server that this script starts
# (initdb + postgres as the postgres user when run as root, versitygw with
# its posix backend, both on loopback, their data on the same filesystem
# as the Maildir cases', PostgreSQL with fsync, synchronous_commit and
# full_page_writes on, as internal/testsupport/engines runs it).
#
#   postoffice-shared        one node
#   postoffice-shared-2nodes two nodes on the same PG + S3: the connections
#                            split between them (1 connection: node A only)
#
# Cases: smtp-2k-1, -8, -64 (durable deliveries/s, 2 KB), pop3-stat-N and
# imap-fetch-N-warm (its select_ms: SELECT alone) on N = $SHARED_STATS
# messages delivered over SMTP beforehand. After each SMTP case, the
# node's /metrics give where the time went:
# postoffice_store_request_duration_seconds{engine,op} (sum/count), in
# $OUT/shared-breakdown.txt and as metrics store-ENGINE-OP-ms.
#
# Uses run.sh's functions (measure, metric, ports, wait_port, stop) and
# variables (WORK, OUT, LG, RUNS, N1, N8, N64, DUR, PIDS).

SHARED_STATS=${SHARED_STATS:-"10000 100000"}
[ -n "$QUICK" ] && SHARED_STATS=${SHARED_STATS_QUICK:-"1000"}
SH_ACCESS=pobench SH_SECRET=pobench-secret-key SH_REGION=us-east-1

sh_as_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# sh_engines_start: a PostgreSQL cluster on $SH_PGP and an S3 server on
# $SH_S3P, data under $SH.
sh_engines_start() {
	SH=$WORK/data/shared
	mkdir -p "$SH/s3" "$SH/pgsock"
	read -r SH_PGP SH_S3P < <(ports 2)
	local bin
	bin=$(dirname "$(readlink -f "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")")
	SH_PGBIN=$bin
	if [ "$(id -u)" -eq 0 ]; then
		chmod 755 "$WORK" "$WORK/data" # postgres must reach its directory
		chown postgres "$SH" "$SH/pgsock"
	fi
	sh_as_pg "$bin/initdb" -D "$SH/pg" -U postgres --auth=trust --encoding=UTF8 --locale=C \
		--no-instructions >"$OUT/initdb.log" 2>&1
	sh_as_pg "$bin/postgres" -D "$SH/pg" -p "$SH_PGP" -c listen_addresses=127.0.0.1 \
		-c unix_socket_directories="$SH/pgsock" -c fsync=on -c synchronous_commit=on \
		-c full_page_writes=on -c max_connections=400 -c shared_buffers=128MB \
		-c logging_collector=off >"$OUT/postgres.log" 2>&1 &
	SH_PGPID=$!
	PIDS+=("$SH_PGPID")
	wait_port "$SH_PGP"
	for _ in $(seq 100); do
		"$bin/pg_isready" -q -h 127.0.0.1 -p "$SH_PGP" && break
		sleep 0.1
	done
	local gw
	gw=$(command -v versitygw || echo "$GOBIN_DIR/versitygw")
	"$gw" --port "127.0.0.1:$SH_S3P" --access "$SH_ACCESS" --secret "$SH_SECRET" --region "$SH_REGION" \
		--quiet posix "$SH/s3" >"$OUT/versitygw.log" 2>&1 &
	SH_S3PID=$!
	PIDS+=("$SH_S3PID")
	wait_port "$SH_S3P"
	{
		echo "shared store: $("$bin/postgres" --version) (fsync, synchronous_commit, full_page_writes on; shared_buffers 128MB), versitygw $(go version -m "$gw" 2>/dev/null | awk '$1 == "mod" {print $3}') posix backend, both on 127.0.0.1, data on the filesystem above"
	} >>"$OUT/machine.txt"
}

sh_engines_stop() {
	sh_as_pg "$SH_PGBIN/pg_ctl" -D "$SH/pg" stop -m fast >/dev/null 2>&1 || stop "$SH_PGPID"
	stop "$SH_PGPID"
	stop "$SH_S3PID"
}

# sh_store NAME: a fresh database and bucket NAME, the schema migrated.
sh_store() {
	"$SH_PGBIN/createdb" -h 127.0.0.1 -p "$SH_PGP" -U postgres "$1"
	# CreateBucket, signed by curl (SigV4; the empty body's SHA-256).
	curl -fsS --aws-sigv4 "aws:amz:$SH_REGION:s3" --user "$SH_ACCESS:$SH_SECRET" \
		-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
		-X PUT "http://127.0.0.1:$SH_S3P/$1" >/dev/null
	if "$WORK/postoffice" migrate --help 2>&1 | grep -q -- --schema; then
		"$WORK/postoffice" migrate --schema --pg-url "$(sh_dsn "$1")" >>"$OUT/postoffice-shared.log" 2>&1
	fi # else serve migrates
}
sh_dsn() { echo "postgres://postgres@127.0.0.1:$SH_PGP/$1?sslmode=disable"; }

# sh_node STORE NODE: starts a node on STORE; sets NODE_SMTP, NODE_POP3,
# NODE_IMAP, NODE_HTTP and NODE_PID.
sh_node() {
	read -r NODE_SMTP NODE_POP3 NODE_IMAP NODE_HTTP < <(ports 4)
	"$WORK/postoffice" serve --store postgres --pg-url "$(sh_dsn "$1")" \
		--s3-endpoint "http://127.0.0.1:$SH_S3P" --s3-bucket "$1" \
		--s3-access-key "$SH_ACCESS" --s3-secret-key "$SH_SECRET" --s3-region "$SH_REGION" \
		--node-name "$2" --smtp-addr "127.0.0.1:$NODE_SMTP" --pop3-addr "127.0.0.1:$NODE_POP3" \
		--imap-addr "127.0.0.1:$NODE_IMAP" --http-addr "127.0.0.1:$NODE_HTTP" \
		--mailbox-dir "$SH/mb-$1-$2" --hostname bench.local >>"$OUT/postoffice-shared-$2.log" 2>&1 &
	NODE_PID=$!
	PIDS+=("$NODE_PID")
	wait_port "$NODE_SMTP"
	wait_port "$NODE_IMAP"
}

# sh_breakdown SERVER CASE HTTPPORT...: the store request durations of the
# nodes since the last call, per engine and operation (CASE start: only
# take the baseline).
declare -A SH_LAST
sh_breakdown() {
	local s=$1 cs=$2 line key sum count
	shift 2
	declare -A tot_sum=() tot_count=()
	for hp in "$@"; do
		while read -r line; do
			key=${line%% *}
			tot_sum[$key]=$(awk -v a="${tot_sum[$key]:-0}" -v b="${line##* }" 'BEGIN {print a + b}')
		done < <(curl -fsS "http://127.0.0.1:$hp/metrics" 2>/dev/null |
			sed -n 's/^postoffice_store_request_duration_seconds_\(sum\|count\){\(.*\)} \(.*\)$/\2,\1 \3/p')
	done
	for key in "${!tot_sum[@]}"; do
		[[ $key == *,sum ]] || continue
		local k=${key%,sum}
		sum=$(awk -v a="${tot_sum[$k,sum]}" -v b="${SH_LAST[$s,$k,sum]:-0}" 'BEGIN {print a - b}')
		count=$(awk -v a="${tot_sum[$k,count]:-0}" -v b="${SH_LAST[$s,$k,count]:-0}" 'BEGIN {print a - b}')
		SH_LAST[$s,$k,sum]=${tot_sum[$k,sum]}
		SH_LAST[$s,$k,count]=${tot_sum[$k,count]:-0}
		[ "$count" = 0 ] || [ "$cs" = start ] && continue # start: the baseline only
		local name
		name=$(echo "$k" | sed 's/engine="\([^"]*\)",op="\([^"]*\)"/\1-\2/; s/op="\([^"]*\)",engine="\([^"]*\)"/\2-\1/')
		local ms
		ms=$(awk -v s="$sum" -v c="$count" 'BEGIN {printf "%.3f", s / c * 1000}')
		echo "$s $cs $name: $count calls, mean $ms ms" >>"$OUT/shared-breakdown.txt"
		metric "$s" "$cs-store-$name-ms" "$ms"
		log "   $s $cs: $name $count calls, mean $ms ms"
	done
}

# measure2 SERVER CASE CONNS MSGS ADDR_A ADDR_B: CONNS/2 connections to
# each node at once, one record of their sum (rate) and worst (latency).
measure2() {
	local s=$1 cs=$2 conns=$3 msgs=$4 a=$5 b=$6
	for i in $(seq "$RUNS"); do
		"$LG" -json -duration "$DUR" -label "$cs" -mode smtp -addr "$a" -conns $((conns / 2)) -msgs "$msgs" -size 2048 \
			>"$WORK/m2a.json" 2>>"$OUT/loadgen.err" &
		local pa=$!
		"$LG" -json -duration "$DUR" -label "$cs" -mode smtp -addr "$b" -conns $((conns / 2)) -msgs "$msgs" -size 2048 \
			>"$WORK/m2b.json" 2>>"$OUT/loadgen.err" &
		local pb=$!
		wait "$pa" || true
		wait "$pb" || true
		if [ ! -s "$WORK/m2a.json" ] || [ ! -s "$WORK/m2b.json" ]; then
			echo "loadgen failed for $s $cs (see $OUT/loadgen.err)" >&2
			continue
		fi
		jq -c -s --arg s "$s" --arg c "$cs" '.[0] + {
			server: $s, case: $c,
			conns: (.[0].conns + .[1].conns), addr: (.[0].addr + "," + .[1].addr),
			messages: (.[0].messages + .[1].messages),
			errors: (.[0].errors + .[1].errors),
			msgs_per_sec: (.[0].msgs_per_sec + .[1].msgs_per_sec),
			p50_ms: ([.[0].p50_ms, .[1].p50_ms] | max),
			p99_ms: ([.[0].p99_ms, .[1].p99_ms] | max),
			max_ms: ([.[0].max_ms, .[1].max_ms] | max)}' "$WORK/m2a.json" "$WORK/m2b.json" | tee -a "$RESULTS" |
			jq -r --arg i "$i" '"   \(.server) \(.case) run \($i): \(.msgs_per_sec|floor) msg/s, p50 \(.p50_ms*100|floor/100) ms (worse node), p99 \(.p99_ms*100|floor/100) ms, errors \(.errors)"' >&2
	done
}

# sh_fill SMTPPORT N: delivers messages over SMTP until the mailbox has N
# (counting from SH_FILLED), 2 KB each, up to 64 connections.
sh_fill() {
	local more=$(($2 - SH_FILLED))
	[ "$more" -le 0 ] && return 0
	local c=64
	while [ $((more % c)) -ne 0 ]; do c=$((c - 1)); done # exactly N
	"$LG" -json -duration 3600s -mode smtp -addr "127.0.0.1:$1" -conns "$c" -msgs $((more / c)) -size 2048 \
		>"$WORK/fill.json" 2>>"$OUT/loadgen.err" || true
	log "   filled $more more over $c connections: $(jq -r '"\(.msgs_per_sec|floor) msg/s, errors \(.errors)"' "$WORK/fill.json" 2>/dev/null)"
	SH_FILLED=$2
}

shared_suite() {
	if ! "$WORK/postoffice" serve --help 2>&1 | grep -q -- '--pg-url'; then
		log "postoffice has no --store postgres: shared store skipped"
		return 0
	fi
	log "postoffice-shared (one node)"
	sh_engines_start
	sh_store one
	sh_node one a
	local A_SMTP=$NODE_SMTP A_HTTP=$NODE_HTTP A_PID=$NODE_PID
	# A server that accepts the flags but keeps mail elsewhere would be
	# measured as the Maildir: one delivery must make a row.
	"$LG" -mode smtp -addr "127.0.0.1:$A_SMTP" -conns 1 -msgs 1 -size 2048 >/dev/null 2>>"$OUT/loadgen.err" || true
	local rows
	rows=$("$SH_PGBIN/psql" -h 127.0.0.1 -p "$SH_PGP" -U postgres -d one -tAc 'SELECT count(*) FROM messages' 2>>"$OUT/postoffice-shared.log" || echo 0)
	if [ "${rows:-0}" -lt 1 ]; then
		log "postoffice --store postgres stored no row for a delivery: shared store skipped (see $OUT/postoffice-shared-a.log)"
		stop "$A_PID"
		sh_engines_stop
		return 0
	fi
	sh_breakdown postoffice-shared start "$A_HTTP"
	local a=(-mode smtp -addr "127.0.0.1:$A_SMTP" -size 2048)
	measure postoffice-shared smtp-2k-1 "${a[@]}" -conns 1 -msgs "$N1"
	sh_breakdown postoffice-shared smtp-2k-1 "$A_HTTP"
	local t0 t1
	t0=$(cpu_ticks "$A_PID")
	measure postoffice-shared smtp-2k-8 "${a[@]}" -conns 8 -msgs "$N8"
	t1=$(cpu_ticks "$A_PID")
	metric postoffice-shared cpu-per-1000 "$(awk -v d=$((t1 - t0)) -v t="$CLK_TCK" -v n=$((RUNS * 8 * N8)) 'BEGIN {printf "%.4f", d / t / n * 1000}')"
	sh_breakdown postoffice-shared smtp-2k-8 "$A_HTTP"
	measure postoffice-shared smtp-2k-64 "${a[@]}" -conns 64 -msgs "$N64"
	sh_breakdown postoffice-shared smtp-2k-64 "$A_HTTP"
	metric postoffice-shared rss-2k "$(hwm_mb "$A_PID")"
	stop "$A_PID"

	log "postoffice-shared-2nodes"
	sh_store two
	sh_node two a
	local A_SMTP=$NODE_SMTP A_HTTP=$NODE_HTTP A_PID=$NODE_PID
	sh_node two b
	local B_SMTP=$NODE_SMTP B_HTTP=$NODE_HTTP B_PID=$NODE_PID
	sh_breakdown postoffice-shared-2nodes start "$A_HTTP" "$B_HTTP"
	measure postoffice-shared-2nodes smtp-2k-1 -mode smtp -addr "127.0.0.1:$A_SMTP" -size 2048 -conns 1 -msgs "$N1"
	measure2 postoffice-shared-2nodes smtp-2k-8 8 "$N8" "127.0.0.1:$A_SMTP" "127.0.0.1:$B_SMTP"
	sh_breakdown postoffice-shared-2nodes smtp-2k-8 "$A_HTTP" "$B_HTTP"
	measure2 postoffice-shared-2nodes smtp-2k-64 64 "$N64" "127.0.0.1:$A_SMTP" "127.0.0.1:$B_SMTP"
	sh_breakdown postoffice-shared-2nodes smtp-2k-64 "$A_HTTP" "$B_HTTP"
	stop "$A_PID"
	stop "$B_PID"

	log "postoffice-shared pop3 stat and imap select"
	sh_store big
	sh_node big a
	SH_FILLED=0
	local n
	for n in $SHARED_STATS; do
		sh_fill "$NODE_SMTP" "$n"
		RUNS=1 measure postoffice-shared "pop3-stat-$n" -mode pop3stat -addr "127.0.0.1:$NODE_POP3" -msgs "$RUNS"
		RUNS=1 measure postoffice-shared "imap-fetch-$n-cold" -mode imapfetch -addr "127.0.0.1:$NODE_IMAP" -user user -msgs 1 -timeout 300s
		RUNS=1 measure postoffice-shared "imap-fetch-$n-warm" -mode imapfetch -addr "127.0.0.1:$NODE_IMAP" -user user -msgs 1 -timeout 300s
	done
	stop "$NODE_PID"
	sh_engines_stop
}
