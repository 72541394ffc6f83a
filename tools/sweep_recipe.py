"""Alias of tools/benchmarks/sweep_recipe.py (its new place, with the other measurement scripts), kept so
that existing commands work: runs it with the same flags. Runs on import, as a script does;
Bazel builds it into the py_binary of tools/benchmarks/sweep_recipe.py.
"""
import os
import runpy
import sys

_TARGET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmarks/sweep_recipe.py")
sys.argv[0] = _TARGET
runpy.run_path(_TARGET, run_name="__main__")
