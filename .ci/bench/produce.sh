#!/usr/bin/env bash
# Produce throughput and latency from outside, Chronik against franz-go's
# kfake, the way the Performance section of the README measures them:
# `chronik serve` with default settings, kfake in its own process, and the
# same `chronik bench produce` (kgo, 1 KiB records, acks=all) in a third,
# rounds interleaved with the order alternating. Not part of CI: run it
# alone on a quiet machine.
#
#   .ci/bench/produce.sh ROUNDS PARTITIONS RECORDS [RATE]
#
#   .ci/bench/produce.sh 10 1000 1048576        # 1 GiB over 1,000 partitions
#   .ci/bench/produce.sh 3 100 200000 20000     # latency at 20 MB/s
#
# Env: DATA (default /tmp) is where a new directory of this script's own
# holds one data directory per run, kept until the end and then removed:
# on ext4 without a journal, files created just after many were deleted
# are slow to create, which would bias the next run. SERVE_FLAGS are added
# to chronik serve. WARMUP=N first sends N records to a topic "warmup" of
# the same partition count on each broker, unmeasured, so that the run
# measures a broker that has been running (a new process spends its first
# GiB faulting in its heap and starting threads); peak RSS, and kfake's
# request counts, still cover the whole process. Prints one line per run:
# MB/s, latency, server CPU ticks (1/100 s, the measured run only), peak
# RSS, client CPU.
set -euo pipefail
rounds=$1 parts=$2 records=$3 rate=${4:-0}
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(mktemp -d)
data=$(mktemp -d "${DATA:-/tmp}/chronik-bench.XXXXXX")
trap 'rm -rf "$bin" "$data"' EXIT
(cd "$repo" && go build -o "$bin/chronik" .)
(cd "$repo/.ci/bench/kfake" && go build -o "$bin/kfake" .)
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
# The build's output (and whatever else is dirty) is written back now, not
# by the kernel's flusher 30 s later in the middle of a run: on a shared
# file system that writeback alone takes a run's p99 from ~8 ms to 30-60.
sync
# The systemd unit sets it; the bench gives every process the same.
export GODEBUG=madvdontneed=0

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

run() { # run WHO ROUND
	local who=$1 round=$2 pid addr
	if [ "$who" = kfake ]; then
		"$bin/kfake" -port 29192 >"$bin/kfake.log" 2>&1 &
		pid=$! addr=127.0.0.1:29192
		for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/29192) 2>/dev/null && break; sleep 0.1; done
	else
		# shellcheck disable=SC2086
		"$bin/chronik" serve --data-dir "$data/$round-$parts" --listen 127.0.0.1:29092 \
			--admin-listen 127.0.0.1:29644 --log-level warn ${SERVE_FLAGS:-} >"$bin/serve.log" 2>&1 &
		pid=$! addr=127.0.0.1:29092
		for _ in $(seq 300); do curl -sf http://127.0.0.1:29644/readyz >/dev/null && break; sleep 0.1; done
	fi
	local t0 out t1 hwm
	if [ "${WARMUP:-0}" -gt 0 ]; then
		# A broker that has been running: the same producer first sends
		# WARMUP records to a topic of its own (same partition count),
		# not measured.
		"$bin/chronik" bench produce --brokers "$addr" --topic warmup \
			--partitions "$parts" --records "$WARMUP" >/dev/null
	fi
	t0=$(ticks "$pid")
	out=$(/usr/bin/time -f "client-cpu %U+%S s" "$bin/chronik" bench produce --brokers "$addr" \
		--partitions "$parts" --records "$records" --rate "$rate" 2>&1)
	t1=$(ticks "$pid")
	hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
	kill -INT "$pid"
	wait "$pid" || true
	echo "round=$round $who $(grep -o '[0-9.]* MB/s' <<<"$out" | head -1)" \
		"$(grep -o 'p50 [0-9.]* ms, p99 [0-9.]* ms, p99.9 [0-9.]* ms' <<<"$out")" \
		"server-ticks=$((t1 - t0)) peak-rss=${hwm}MiB $(grep -o 'client-cpu .*' <<<"$out")" \
		"$([ "$who" = kfake ] && grep -o 'produce requests=.*' "$bin/kfake.log" || true)"
}

for r in $(seq "$rounds"); do
	if [ $((r % 2)) -eq 1 ]; then order="kfake chronik"; else order="chronik kfake"; fi
	for who in $order; do run "$who" "$r"; done
done
