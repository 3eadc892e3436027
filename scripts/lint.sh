#!/usr/bin/env bash
# The static checks, run by scripts/test.sh (and so by CI) before the tests: formatting, clippy
# and rustdoc with warnings denied, and the repository's shape (scripts/check_repo.py: a true
# rust-version, links that resolve, nothing outside the repository, files of a readable size).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '%s\n' "lint: $*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (warnings denied)"
cargo clippy --quiet --workspace --all-targets -- -D warnings
step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --workspace --no-deps
step "repository shape"
python3 scripts/check_repo.py
