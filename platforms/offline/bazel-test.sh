#!/usr/bin/env bash
# Offline Bazel, start to end (what `./vsearch test` calls for the Bazel side):
#   1. Debian's bazel-bootstrap 4.2.3 + bazel-rules-java, via apt when missing, and what the
#      image tests use when missing: docker.io (run tier), qemu-user-static (arm64 images under
#      emulation), skopeo + docker-registry (publishing to a local registry);
#   2. platforms/offline/fetch_deps.py: the pinned .debs and wheels into the cache
#      ($VSEARCH_BAZEL_CACHE, default ~/.cache/vsearch-bazel), SHA256-checked;
#   3. bazel test //... (WORKSPACE mode, --config=offline), then the image size report.
#
#   platforms/offline/bazel-test.sh [bazel test args...]     e.g. //stages/search:all
#   VSEARCH_BAZEL_REPRO=1 platforms/offline/bazel-test.sh    + a second clean build, digests compared
#   VSEARCH_BAZEL_REGIMES=1 platforms/offline/bazel-test.sh  + //harness:regimes (left out by default)
#
# Exit 0 without testing only when apt cannot provide bazel-bootstrap (reason printed);
# any other failure is a failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
say() { printf 'bazel-test: %s\n' "$*" >&2; }
now() { date +%s; }
t_start=$(now)

# Debian's /usr/bin/bazel is a wrapper that honours .bazelversion (8.x, for online users): call
# the 4.2.3 binary itself.
BAZEL=${VSEARCH_BAZEL:-/usr/bin/bazel-4}

need_apt=()
[ -x "$BAZEL" ] || need_apt+=(bazel-bootstrap)
[ -f /usr/share/bazel/rules/java/WORKSPACE ] || need_apt+=(bazel-rules-java)
# Optional: without them the tests that need them skip with the reason.
want_apt=()
command -v dockerd >/dev/null || want_apt+=(docker.io)
[ -f /usr/lib/binfmt.d/qemu-aarch64.conf ] || want_apt+=(qemu-user-static)
command -v skopeo >/dev/null || want_apt+=(skopeo)
command -v docker-registry >/dev/null || want_apt+=(docker-registry)
if [ ${#need_apt[@]} -gt 0 ] || [ ${#want_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    if [ ${#need_apt[@]} -gt 0 ]; then
      echo "SKIPPED: Bazel tests: ${need_apt[*]} missing and apt-get is not usable here (not root or no apt)"
      exit 0
    fi
  else
    export DEBIAN_FRONTEND=noninteractive
    say "apt-get update"
    apt-get update -qq >/dev/null || say "apt-get update failed; installing from the lists there are"
    if [ ${#need_apt[@]} -gt 0 ]; then
      for pkg in "${need_apt[@]}"; do
        policy=$(LC_ALL=C apt-cache policy "$pkg" 2>/dev/null || true)
        if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
          echo "SKIPPED: Bazel tests: apt has no candidate for $pkg (Debian's bazel-bootstrap is the only Bazel that runs offline)"
          exit 0
        fi
      done
      say "installing ${need_apt[*]}"
      apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    fi
    # One at a time, so that one missing package does not keep the others out.
    for pkg in "${want_apt[@]}"; do
      say "installing $pkg (image tests)"
      apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null ||
        say "$pkg could not be installed: the tests that need it will skip"
    done
  fi
fi
t_apt=$(now)

say "fetching pinned .debs and wheels (platforms/offline/fetch_deps.py)"
python3 platforms/offline/fetch_deps.py
read -r -a cache_flags < <(python3 platforms/offline/fetch_deps.py --print-flags)
t_fetch=$(now)

bazel_flags=(--config=offline --build_tests_only "${cache_flags[@]}")
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(//...)
  # //harness:regimes is `pytest harness -k regimes` in .venv, which ./vsearch test's own pytest
  # run covers already (and it takes minutes): left out here unless VSEARCH_BAZEL_REGIMES=1.
  if [ -z "${VSEARCH_BAZEL_REGIMES:-}" ]; then
    targets+=(-//harness:regimes)
    say "leaving out //harness:regimes (run by ./vsearch test's pytest; VSEARCH_BAZEL_REGIMES=1 adds it)"
  fi
fi
say "bazel test ${targets[*]}"
set +e
"$BAZEL" test "${bazel_flags[@]}" -- "${targets[@]}"
rc=$?
set -e
t_test=$(now)

# Tests that skipped (no Docker engine, no .venv...) pass in Bazel: say which and why.
if [ -d bazel-testlogs ]; then
  grep -rh --include=test.log -m1 '^SKIPPED:' -H bazel-testlogs/ 2>/dev/null |
    sed -e 's|^bazel-testlogs/|//|' -e 's|/test.log:| |' | while read -r line; do say "skipped $line"; done || true
fi
# The run tier's figures (load, start to /_/health, invoke per image and architecture).
run_log=bazel-testlogs/platforms/tests/image_run_test/test.log
if [ -f "$run_log" ]; then
  sed -n '/^image run tier figures/,/^[^a-z]/p' "$run_log" | grep -v '^[^a-z]' >&2 || true
fi
if [ $rc -ne 0 ]; then
  say "bazel test failed (exit $rc)"
  exit $rc
fi

python3 platforms/tools/image_report.py --bazel-bin bazel-bin || say "no size report"

if [ -n "${VSEARCH_BAZEL_REPRO:-}" ]; then
  say "reproducibility: a second build of //:images from a clean output base"
  platforms/offline/repro-check.sh "${cache_flags[@]}"
fi
t_end=$(now)
say "timings: apt $((t_apt - t_start)) s, fetch $((t_fetch - t_apt)) s, bazel test $((t_test - t_fetch)) s, total $((t_end - t_start)) s"
