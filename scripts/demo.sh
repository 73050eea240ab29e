#!/usr/bin/env bash
# Demo: a real Prometheus scraping itself and the node exporter, the sidecar following its WAL,
# and the local Cloud Monitoring emulator receiving the points. Shows a table of what arrived,
# refreshed until Ctrl-C or until --duration ends, then stops everything it started.
#
#   ./scripts/demo.sh [--duration 60s]
#
# Ports (loopback only) can be changed with DEMO_PROMETHEUS_PORT, DEMO_NODE_PORT,
# DEMO_EMULATOR_PORT, DEMO_SIDECAR_PORT (the sidecar's /metrics, /statusz, /-/healthy, /-/ready).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="${2:?--duration needs a value such as 60s}"; shift 2 ;;
    --duration=*) duration="${1#--duration=}"; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "demo: unknown argument $1" >&2; exit 2 ;;
  esac
done

prom_port=${DEMO_PROMETHEUS_PORT:-19090}
node_port=${DEMO_NODE_PORT:-19100}
emu_port=${DEMO_EMULATOR_PORT:-19092}
web_port=${DEMO_SIDECAR_PORT:-19091}

./scripts/install-deps.sh
echo "demo: building (release)..." >&2
cargo build --release --locked -q -p stackdriver-prometheus-sidecar -p gcm-emulator
bin=target/release

work=$(mktemp -d -t sidecar-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "demo: stopped everything; logs were in $work (removed)" >&2
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat > "$work/prometheus.yml" <<YAML
global:
  # Cloud Monitoring takes at most one point per series every 5 s; scrape times jitter a little.
  scrape_interval: 6s
  evaluation_interval: 6s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:${prom_port}']
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:${node_port}']
  - job_name: sidecar
    static_configs:
      - targets: ['127.0.0.1:${web_port}']
YAML

prometheus-node-exporter --web.listen-address="127.0.0.1:${node_port}" >"$work/node-exporter.log" 2>&1 &
pids+=($!)
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:${prom_port}" >"$work/prometheus.log" 2>&1 &
pids+=($!)
"$bin/gcm-emulator" --listen-address="127.0.0.1:${emu_port}" >"$work/emulator.log" 2>&1 &
pids+=($!)

# The WAL directory appears once Prometheus has opened its storage.
for _ in $(seq 1 100); do [ -d "$work/data/wal" ] && break; sleep 0.1; done
"$bin/stackdriver-prometheus-sidecar" \
  --stackdriver.project-id=demo \
  --stackdriver.api-address="http://127.0.0.1:${emu_port}/?auth=false" \
  --stackdriver.generic.location=local \
  --stackdriver.generic.namespace=demo \
  --prometheus.wal-directory="$work/data/wal" \
  --prometheus.api-address="http://127.0.0.1:${prom_port}/" \
  --web.listen-address="127.0.0.1:${web_port}" >"$work/sidecar.log" 2>&1 &
pids+=($!)

echo "demo: Prometheus http://127.0.0.1:${prom_port}/, emulator 127.0.0.1:${emu_port}; Ctrl-C to stop" >&2
echo "demo: sidecar status page http://127.0.0.1:${web_port}/statusz (metrics: /metrics)" >&2
top_args=(top --address="127.0.0.1:${emu_port}" --project=demo --interval=2s)
[ -n "$duration" ] && top_args+=(--duration="$duration")
"$bin/gcm-emulator" "${top_args[@]}"
