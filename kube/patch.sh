#!/usr/bin/env bash
# Adds the sidecar container to a running Prometheus Deployment or StatefulSet, sharing its data
# volume (see sidecar-patch.yaml for what is added).
#
#   GCP_PROJECT=my-project GCP_LOCATION=europe-west1 KUBE_CLUSTER=prod \
#     kube/patch.sh statefulset prometheus
#
# Settings (environment):
#   GCP_PROJECT      Google Cloud project receiving the metrics (required)
#   GCP_LOCATION     location of the cluster, e.g. europe-west1 or europe-west1-b (required)
#   KUBE_CLUSTER     cluster name (required)
#   KUBE_NAMESPACE   namespace of the Prometheus workload (default: monitoring)
#   DATA_VOLUME      name of the pod volume holding Prometheus's data (default: prometheus-data)
#   DATA_DIR         where Prometheus mounts it, i.e. its --storage.tsdb.path (default: /prometheus)
#   PROMETHEUS_PORT  Prometheus's port inside the pod (default: 9090)
#   RUN_AS_USER      user id Prometheus runs as; the sidecar runs as the same (default: 65534)
#   SIDECAR_IMAGE    image to run (default: stackdriver-prometheus-sidecar:latest)
#   API_ADDRESS      Monitoring API address (default: https://monitoring.googleapis.com:443/;
#                    credentials: see kube/README.md; the emulator: http://HOST:PORT/?auth=false)
#   DRY_RUN=1        print the patch instead of applying it
set -euo pipefail

if [ $# -ne 2 ] || { [ "$1" != deployment ] && [ "$1" != statefulset ]; }; then
  sed -n '2,20p' "$0" >&2
  echo "usage: $0 deployment|statefulset NAME" >&2
  exit 2
fi
kind=$1 name=$2

: "${GCP_PROJECT:?set GCP_PROJECT}" "${GCP_LOCATION:?set GCP_LOCATION}" "${KUBE_CLUSTER:?set KUBE_CLUSTER}"
export GCP_PROJECT GCP_LOCATION KUBE_CLUSTER
export DATA_VOLUME=${DATA_VOLUME:-prometheus-data}
export DATA_DIR=${DATA_DIR:-/prometheus}
export PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
export RUN_AS_USER=${RUN_AS_USER:-65534}
export SIDECAR_IMAGE=${SIDECAR_IMAGE:-stackdriver-prometheus-sidecar:latest}
export API_ADDRESS=${API_ADDRESS:-https://monitoring.googleapis.com:443/}
namespace=${KUBE_NAMESPACE:-monitoring}

# Substitutes exactly the variables above, leaving any other "$" alone.
vars='${GCP_PROJECT}${GCP_LOCATION}${KUBE_CLUSTER}${DATA_VOLUME}${DATA_DIR}${PROMETHEUS_PORT}${RUN_AS_USER}${SIDECAR_IMAGE}${API_ADDRESS}'
patch=$(envsubst "$vars" < "$(dirname "$0")/sidecar-patch.yaml")

if [ -n "${DRY_RUN:-}" ]; then
  printf '%s\n' "$patch"
  exit 0
fi
kubectl -n "$namespace" patch "$kind" "$name" --type strategic --patch "$patch"
echo "patched $kind/$name in $namespace; check with:" >&2
echo "  kubectl -n $namespace port-forward $kind/$name 9091 && open http://127.0.0.1:9091/statusz" >&2
