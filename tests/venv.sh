#!/usr/bin/env bash
# Usage: tests/venv.sh NAME. Creates, once, a virtualenv with the packages of
# tests/NAME/requirements.txt (from PyPI) and prints its python: tests/otel (the OpenTelemetry
# Python SDK and its OTLP exporters, for tests/tests/otlp.rs) and tests/chdb (chDB, ClickHouse in
# process, for tests/tests/registry.rs). It lives in the cargo target dir (`NAME-venv`) and is
# made again when requirements.txt changes. Needs python3 with venv (scripts/install-deps.sh).
set -euo pipefail
name="${1:?usage: tests/venv.sh NAME (a folder of tests/ with a requirements.txt)}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
requirements="$here/$name/requirements.txt"
[ -f "$requirements" ] || { echo "tests/venv.sh: no $requirements" >&2; exit 2; }
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
venv="$target/$name-venv"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
mkdir -p "$target"
exec 9>"$venv.lock"
flock 9
if [ "$(cat "$venv/.requirements" 2>/dev/null || true)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements" >&2
  echo "$want" >"$venv/.requirements"
fi
echo "$venv/bin/python"
