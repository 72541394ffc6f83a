#!/usr/bin/env bash
# Alias of tools/build/run_bazel_tests.sh (its new place, with the other Bazel helpers), kept so
# that existing commands work: same arguments, same exit code.
exec "$(dirname "${BASH_SOURCE[0]}")/build/run_bazel_tests.sh" "$@"
