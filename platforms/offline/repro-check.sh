#!/usr/bin/env bash
# Reproducibility: build //:images (every image index, amd64 + arm64) in a fresh Bazel output
# base and compare each index digest with the build in ./bazel-bin, or, with --two, build twice
# in two fresh output bases and compare those. Extra args go to bazel (the cache flags of
# fetch_deps.py --print-flags are added when absent).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
BAZEL=${VSEARCH_BAZEL:-/usr/bin/bazel-4}
two=
if [ "${1:-}" = "--two" ]; then two=1; shift; fi
flags=("$@")
[ ${#flags[@]} -gt 0 ] || read -r -a flags < <(python3 platforms/offline/fetch_deps.py --print-flags)

digests() {  # bazel-bin dir -> "package digest" lines
  find "$1"/ -path '*/index/index.json' | sort | while read -r f; do
    pkg=${f#"$1"/}; pkg=${pkg%/index/index.json}
    printf '//%s %s\n' "$pkg" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$f")"
  done
}

fresh_build() {  # output base -> bazel-bin path
  # --symlink_prefix=/: leave ./bazel-bin pointing at the main output base.
  "$BAZEL" --output_base="$1" build --config=offline --symlink_prefix=/ "${flags[@]}" //:images >&2
  "$BAZEL" --output_base="$1" info --config=offline "${flags[@]}" bazel-bin 2>/dev/null
}

work=$(mktemp -d /tmp/vsearch-repro-XXXXXX)
trap '"$BAZEL" --output_base="$work/a" shutdown 2>/dev/null || true; "$BAZEL" --output_base="$work/b" shutdown 2>/dev/null || true; rm -rf "$work"' EXIT
if [ -n "$two" ]; then
  first=$(fresh_build "$work/a"); digests "$first" >"$work/first.txt"
else
  "$BAZEL" build --config=offline "${flags[@]}" //:images >&2
  digests "$(readlink -f bazel-bin)" >"$work/first.txt"
fi
second=$(fresh_build "$work/b"); digests "$second" >"$work/second.txt"
if diff -u "$work/first.txt" "$work/second.txt"; then
  echo "reproducible: $(wc -l <"$work/first.txt") image indexes, identical digests:"
  cat "$work/first.txt"
else
  echo "NOT reproducible: the index digests above differ" >&2
  exit 1
fi
