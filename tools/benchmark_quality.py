"""Alias of tools/benchmarks/benchmark_quality.py (its new place, with the other measurement scripts), kept so
that existing commands work: runs it with the same flags. Runs on import, as a script does;
Bazel builds it into the py_binary of tools/benchmarks/benchmark_quality.py.
"""
import os
import runpy
import sys

_TARGET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmarks/benchmark_quality.py")
sys.argv[0] = _TARGET
runpy.run_path(_TARGET, run_name="__main__")
