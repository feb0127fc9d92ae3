#!/usr/bin/env bash
# Usage: .ci/compat/venv.sh NAME REQUIREMENTS_FILE
# Prints the path of a virtual environment holding exactly REQUIREMENTS_FILE, built once and reused.
#
# Environments live in the CI cache, outside the clone (FLOPBUDGET_CI_CACHE, default
# ~/.cache/flopbudget-ci), keyed by the requirement file's content and the Python version: a re-run
# on the same machine reuses them (seconds), a changed file or a fresh machine builds a new one
# (minutes: other torch releases are multi-GB CUDA builds from the registry). Wheels are downloaded
# into one wheelhouse in the same place ($cache/wheels, shared by all environments), so a rebuilt
# environment does not download them again (the registry here answers no-store: pip's own HTTP cache
# keeps nothing).
# The project itself is not installed here: .ci/run installs the clone into it on every run.
set -euo pipefail
name=$1 requirements=$2
cache="${FLOPBUDGET_CI_CACHE:-$HOME/.cache/flopbudget-ci}"
key=$( { python3 --version; cat "$requirements"; } | sha256sum | cut -c1-16)
venv="$cache/venvs/$name-$key"
if [[ ! -f "$venv/.complete" ]]; then
    mkdir -p "$cache/venvs"
    rm -rf "$venv"
    # The environment of an earlier requirement file of this name is updated in place rather than
    # rebuilt (a torch install takes minutes): pip replaces what changed; a package dropped from
    # the file stays until the cache is cleared. Any other environment of this name is removed.
    previous=$(find "$cache/venvs" -maxdepth 2 -path "$cache/venvs/$name-*/.complete" -printf '%h\n' | head -n 1)
    if [[ -n "$previous" ]]; then
        rm "$previous/.complete"
        mv "$previous" "$venv"
    fi
    find "$cache/venvs" -maxdepth 1 -name "$name-*" ! -name "$name-$key" -exec rm -rf {} + >&2
    python3 -m venv "$venv" >&2  # a new one, or the moved one's scripts rewritten for its new path
    # PIP_CONSTRAINT=/dev/null: this machine's /etc/xdg/pip caps torch at the releases on its disk;
    # the requirement file pins every version this environment is for.
    export PIP_CONSTRAINT=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
    # download skips the files already in the wheelhouse; install then reads only the wheelhouse
    "$venv/bin/python" -m pip download -q -d "$cache/wheels" -r "$requirements" "setuptools>=68" wheel \
        2>&1 | grep -v "is ignored: it is neither" >&2 || true
    "$venv/bin/python" -m pip install -q --no-index --find-links "$cache/wheels" \
        -r "$requirements" "setuptools>=68" wheel >&2
    touch "$venv/.complete"
fi
echo "$venv"
