#!/usr/bin/env bash
# Fails when a tracked file over 1 MB lies outside the benchmark inputs (bench/) and the test
# fixtures (a `fixtures/` folder): profiles, build outputs and data dumps do not belong in the
# repository.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=$((1024 * 1024))
found=0
while IFS= read -r -d '' path; do
  case "$path" in
    bench/* | */fixtures/* | fixtures/*) continue ;;
  esac
  [ -f "$path" ] || continue
  size=$(stat -c %s "$path")
  if [ "$size" -gt "$limit" ]; then
    echo "check-large-files: $path is $size bytes (over 1 MB); keep such files out of the repository" >&2
    found=1
  fi
done < <(git ls-files -z)
exit "$found"
