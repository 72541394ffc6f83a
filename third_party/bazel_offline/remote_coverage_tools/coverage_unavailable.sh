#!/bin/sh
echo "bazel coverage is not available offline (see third_party/bazel_offline/README.md)" >&2
exit 1
