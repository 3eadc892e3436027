#!/usr/bin/env python3
"""Checks of the repository's shape that CI runs beside fmt, clippy and rustdoc.

1. The workspace's rust-version is at least the highest rust-version a locked dependency
   declares (so the declared minimum is true).
2. Every relative link in the Markdown files resolves, and nothing tracked points outside the
   repository (the repository stands alone).
3. Files stay small enough to hold in one's head: no non-test Rust source over 600 lines, no
   script over 400 lines, the CLI crate at most 1,800 lines.

Exits non-zero listing every problem.
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
problems = []


def tracked():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [f for f in out.stdout.splitlines() if os.path.isfile(os.path.join(ROOT, f))]


def version(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def check_msrv():
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked"], cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout)
    ours = set(meta["workspace_members"])
    declared = [p for p in meta["packages"] if p["id"] in ours and p.get("rust_version")]
    needed = max(((version(p["rust_version"]), p["name"]) for p in meta["packages"]
                  if p["id"] not in ours and p.get("rust_version")), default=((0,), ""))
    for p in declared:
        if version(p["rust_version"]) < needed[0]:
            problems.append(f"{p['name']} declares rust-version {p['rust_version']}, but the locked {needed[1]} needs "
                            f"{'.'.join(map(str, needed[0]))}: raise rust-version in Cargo.toml")


LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def check_links(files):
    for f in files:
        if not f.endswith(".md"):
            continue
        text = open(os.path.join(ROOT, f), encoding="utf-8").read()
        for m in LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z]+:", target):
                continue
            path = os.path.normpath(os.path.join(ROOT, os.path.dirname(f), target))
            if not path.startswith(ROOT + os.sep) and path != ROOT:
                problems.append(f"{f}: link {target} points outside the repository")
            elif not os.path.exists(path):
                problems.append(f"{f}: link {target} does not resolve")


OUTSIDE = re.compile(r"\.\./shared|/work/shared")


def check_outside(files):
    for f in files:
        if f.startswith("scripts/check_repo.py") or f.endswith((".json", ".lock")):
            continue
        try:
            text = open(os.path.join(ROOT, f), encoding="utf-8").read()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                problems.append(f"{f}:{n}: refers outside the repository: {line.strip()[:100]}")


def is_test(f):
    parts = f.split("/")
    return "tests" in parts or "benches" in parts or "examples" in parts or f.endswith(("/tests.rs", "_tests.rs"))


def check_sizes(files):
    cli = 0
    for f in files:
        if f.endswith(".rs"):
            n = sum(1 for _ in open(os.path.join(ROOT, f), encoding="utf-8"))
            if f.startswith("crates/ledger-cli/"):
                cli += n
            if not is_test(f) and n > 600:
                problems.append(f"{f}: {n} lines (at most 600 for a source file): split it by responsibility")
        elif f.endswith(".sh"):
            n = sum(1 for _ in open(os.path.join(ROOT, f), encoding="utf-8"))
            if n > 400:
                problems.append(f"{f}: {n} lines (at most 400 for a script): move a service or step into its own file")
    if cli > 1800:
        problems.append(f"crates/ledger-cli: {cli} lines (at most 1,800): move the work into a library crate")


files = tracked()
check_msrv()
check_links(files)
check_outside(files)
check_sizes(files)
if problems:
    print("repository checks failed:", *problems, sep="\n  - ", file=sys.stderr)
    sys.exit(1)
print(f"repository checks passed ({len(files)} files)")
