#!/bin/sh
# Interpreter of the //tools/python:path_toolchain: whichever python3 is first on PATH.
exec python3 "$@"
