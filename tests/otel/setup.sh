#!/usr/bin/env bash
# Creates, once, the virtualenv with the OpenTelemetry Python SDK and its OTLP exporters
# (tests/otel/requirements.txt, from PyPI) that tests/tests/otlp.rs runs send_genai_spans.py
# with, and prints its python. It lives in the cargo target dir (`otel-venv`) and is made
# again when requirements.txt changes. Needs python3 with venv (scripts/install-deps.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
venv="$target/otel-venv"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
mkdir -p "$target"
exec 9>"$venv.lock"
flock 9
if [ "$(cat "$venv/.requirements" 2>/dev/null || true)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt" >&2
  echo "$want" >"$venv/.requirements"
fi
echo "$venv/bin/python"
