#!/usr/bin/env bash
# Runs every Bazel test target (`bazel test //...`) offline, with the project venv's Python.
#
# Usage: tools/build/run_bazel_tests.sh [extra `bazel test` arguments, e.g. //:test_layers]
#
# - Installs Debian's bazel-bootstrap (Bazel 4.2.3) with apt-get when `bazel` is missing.
# - Uses the venv at $MAGENTA_STYLE_VENV (default: <repo>/.venv): its bin/ goes first on PATH,
#   and //tools/python:path_toolchain runs the first python3 on PATH.
# - Passes MAGENTA_STYLE_FIXTURES (made absolute; default <repo>/../shared/fixtures) and
#   MAGENTA_STYLE_REQUIRE_FIXTURES to the tests.
# - MAGENTA_STYLE_BAZEL_SHUTDOWN=1 stops the Bazel server afterwards (for CI).
# Exit code: Bazel's (0 when every test passed), 2 for a set-up problem.
set -euo pipefail

readonly REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly VENV="${MAGENTA_STYLE_VENV:-${REPO_ROOT}/.venv}"

die() {
  echo "run_bazel_tests.sh: $*" >&2
  exit 2
}

install_bazel() {
  command -v apt-get >/dev/null || die "bazel is not installed and apt-get is unavailable;" \
    "install Bazel 4.2.3 (Debian/Ubuntu package bazel-bootstrap)"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "bazel is missing; run as root or install bazel-bootstrap"
    sudo=(sudo)
  fi
  echo "run_bazel_tests.sh: installing bazel-bootstrap with apt-get" >&2
  # Bounded, so that an unreachable package mirror fails the job instead of hanging it.
  timeout 600 "${sudo[@]}" apt-get update -q \
    || die "apt-get update failed (exit $?)"
  timeout 900 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends bazel-bootstrap \
    || die "apt-get install bazel-bootstrap failed (exit $?)"
}

cd "${REPO_ROOT}"
[[ -x "${VENV}/bin/python3" ]] \
  || die "no Python venv at ${VENV}; create it first (see README), or set MAGENTA_STYLE_VENV"
"${VENV}/bin/python3" -c "import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ('pytest', 'tensorflow')))" 2>/dev/null \
  || die "the venv ${VENV} lacks pytest or tensorflow; install the project with its test extra"
command -v bazel >/dev/null || install_bazel

export PATH="${VENV}/bin:${PATH}"
fixtures="${MAGENTA_STYLE_FIXTURES:-${REPO_ROOT}/../shared/fixtures}"
if [[ -d "${fixtures}" ]]; then
  fixtures="$(cd "${fixtures}" && pwd)"
fi
export MAGENTA_STYLE_FIXTURES="${fixtures}"
echo "run_bazel_tests.sh: $(bazel --version 2>/dev/null || echo bazel), $(python3 --version)" \
  "from ${VENV}, fixtures ${MAGENTA_STYLE_FIXTURES}" >&2

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(//...)
status=0
bazel test "${targets[@]}" || status=$?
if [[ "${MAGENTA_STYLE_BAZEL_SHUTDOWN:-0}" == 1 ]]; then
  bazel shutdown || true
fi
exit "${status}"
