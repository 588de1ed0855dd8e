#!/usr/bin/env bash
# Refresh requirements/lock.txt (`make lock`): the exact versions of the runtime dependencies and the
# `test`, `export`, `train`, `dev`, `tvm` and `lab` extras, for the Python that runs this script (CPython 3.11, x86_64 Linux).
#
# pip-compile (pip-tools) resolves with pip's own resolver and so with this machine's pip configuration
# (find-links, extra indexes, constraints). The lock names no index, find-links or host: it pins versions only.
# Pins already in the lock are kept where they still satisfy pyproject.toml; pass --upgrade (or
# `make lock LOCK_ARGS=--upgrade`) to move every pin to the newest version that resolves, or
# --upgrade-package NAME for one package.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
# The lock is for one Python (the one CI and the README commands use); say which if python3 is another.
want=3.11
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$have" != "$want" ]; then
    echo "$python is Python $have; the lock is for $want: run PYTHON=python$want make lock" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet -r requirements/lock-tools.txt
CUSTOM_COMPILE_COMMAND="make lock" "$tmp/venv/bin/pip-compile" --quiet \
    --extra test --extra export --extra train --extra dev --extra tvm --extra lab --strip-extras --allow-unsafe \
    --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
    --output-file requirements/lock.txt "$@" pyproject.toml
if grep -n -i -E 'https?://|file://|--(index-url|extra-index-url|find-links|trusted-host)' requirements/lock.txt; then
    echo "requirements/lock.txt names an index or host (above): refusing to keep it" >&2
    exit 1
fi
echo "requirements/lock.txt written; test it with: make test"
