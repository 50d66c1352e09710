#!/usr/bin/env bash
# Libdoc HTML for every keyword library and resource file: one page per libraries/*.py
# and per resources/*.resource (agent_chat.resource: the plain-language keywords the
# suites use) in docs/libdoc/ (git-ignored). Run from anywhere, in the project's
# virtual environment:
#
#     tools/libdoc.sh              # writes docs/libdoc/<Library>.html and <resource>.html
#     tools/libdoc.sh OUTPUT_DIR   # writes there instead
#
# Fails (exit 1) if any library or resource does not build, or if libdoc prints anything
# but the path it wrote: a warning (e.g. an argument type it cannot document) is a doc bug too.
# The pages are built in parallel (one libdoc process each); the report is in name order.
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/docs/libdoc}"
python="${PYTHON:-python}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sources=()
for source in "$root"/libraries/*.py "$root"/resources/*.resource; do
    [ -e "$source" ] && sources+=("$source")
done
for source in "${sources[@]}"; do
    name="$(basename "$source")"
    name="${name%.*}"
    (
        "$python" -m robot.libdoc --pythonpath "$root/libraries" "$source" "$out/$name.html" >"$work/$name.out" 2>&1
        echo $? >"$work/$name.rc"
    ) &
done
wait
status=0
for source in "${sources[@]}"; do
    name="$(basename "$source")"
    name="${name%.*}"
    target="$out/$name.html"
    messages="$(cat "$work/$name.out")"
    if [ "$(cat "$work/$name.rc")" != 0 ]; then
        echo "FAIL $name:" >&2
        echo "$messages" >&2
        status=1
        continue
    fi
    extra="$(printf '%s\n' "$messages" | grep -vxF "$target" || true)"
    if [ -n "$extra" ]; then
        echo "WARN $name:" >&2
        echo "$extra" >&2
        status=1
    else
        echo "ok   $name -> $target"
    fi
done
exit $status
