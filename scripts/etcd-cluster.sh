#!/usr/bin/env bash
# A local 3-member etcd cluster on 127.0.0.1 for side-by-side benchmarks (not a dependency:
# Debian's etcd-server package provides /usr/bin/etcd). Usage:
#   scripts/etcd-cluster.sh start [DIR]   # prints the client URLs for paxosbench --etcd
#   scripts/etcd-cluster.sh pids  [DIR]   # prints the members' PIDs for paxosbench --etcd-pids
#   scripts/etcd-cluster.sh stop  [DIR]
set -euo pipefail
action=${1:-start}
dir=${2:-/tmp/paxos-etcd}
cluster="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
case "$action" in
start)
    command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
    running=0
    for i in 1 2 3; do
        [ -f "$dir/e$i.pid" ] && kill -0 "$(cat "$dir/e$i.pid")" 2>/dev/null && running=$((running + 1))
    done
    if [ "$running" -gt 0 ]; then  # a second start would overwrite the PIDs of the running one
        echo "etcd is already running from $dir ($running of 3 members): stop it first" >&2
        exit 1
    fi
    mkdir -p "$dir"
    for i in 1 2 3; do
        etcd --name "e$i" --data-dir "$dir/e$i" \
            --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
            --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
            --initial-cluster "$cluster" --initial-cluster-state new --log-level error \
            >"$dir/e$i.log" 2>&1 &
        echo $! >"$dir/e$i.pid"
    done
    for _ in $(seq 50); do
        curl -sf -X POST http://127.0.0.1:23791/v3/kv/range -d '{"key":"a2V5"}' >/dev/null && break
        sleep 0.2
    done
    for i in 1 2 3; do  # a member that could not start (its port taken, say) has exited
        kill -0 "$(cat "$dir/e$i.pid")" 2>/dev/null || {
            echo "etcd member e$i exited; its log ($dir/e$i.log):" >&2
            tail -5 "$dir/e$i.log" >&2
            for j in 1 2 3; do kill "$(cat "$dir/e$j.pid")" 2>/dev/null || true; done
            exit 1
        }
    done
    echo "http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793"
    ;;
pids)
    cat "$dir"/e1.pid "$dir"/e2.pid "$dir"/e3.pid | paste -sd, -
    ;;
stop)
    # SIGTERM each member by PID, wait up to 10 s for it to exit (a member can take a few seconds
    # to leave), then SIGKILL what is left, so that no etcd outlives the benchmark.
    pids=()
    for i in 1 2 3; do
        [ -f "$dir/e$i.pid" ] && pids+=("$(cat "$dir/e$i.pid")")
    done
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 100); do
        alive=0
        for pid in "${pids[@]}"; do  # a zombie (state Z) has exited; its parent reaps it
            kill -0 "$pid" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' "/proc/$pid/stat" 2>/dev/null \
                && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
    ;;
*) echo "usage: $0 start|pids|stop [DIR]" >&2; exit 2 ;;
esac
