"""Entry point of every Bazel `py_test`: runs pytest on one test file.

Bazel runs a test target's `main` file directly, without pytest, so each
`py_test` in /BUILD uses this file as `main` and names its test file in `args`.
Bazel starts it in the runfiles copy of the repository, where tests/conftest.py
is present through the target's `data`.

Usage: python tests/bazel_pytest_main.py tests/test_x.py [pytest args...]
Exit code: pytest's; 5 ("no tests collected") is reported as a failure too.
"""
import os
import sys

import pytest

NO_TESTS_COLLECTED = 5


def _drop_editable_install_finder():
    """Imports magenta_style only from Bazel's runfiles, so a missing BUILD dep fails the test.

    `pip install -e .` adds a meta-path finder that serves any magenta_style
    submodule from the source tree, which would hide a py_library missing from
    a target's deps.
    """
    sys.meta_path[:] = [
        finder for finder in sys.meta_path
        if not ("__editable__" in getattr(finder, "__module__", "")
                and "magenta_style" in getattr(finder, "__module__", ""))
    ]


def main(argv):
    """Runs pytest on the test file in argv[1] and returns its exit code (0 on success)."""
    if len(argv) < 2 or not argv[1].endswith(".py"):
        print(f"usage: {argv[0]} TEST_FILE.py [PYTEST_ARGS...]", file=sys.stderr)
        return 2
    test_file = argv[1]
    if not os.path.isfile(test_file):
        print(f"{argv[0]}: test file {test_file} not found in {os.getcwd()}", file=sys.stderr)
        return 2
    _drop_editable_install_finder()
    # The runfiles tree is read-only for tests; pytest's cache would only warn there.
    args = [test_file, "-p", "no:cacheprovider", "-q", *argv[2:]]
    # Bazel asks for a JUnit report here so it can show per-test-case results.
    xml_output = os.environ.get("XML_OUTPUT_FILE")
    if xml_output:
        args.append(f"--junitxml={xml_output}")
    code = int(pytest.main(args))
    if code == NO_TESTS_COLLECTED:
        print(f"{test_file}: pytest collected no tests; a py_test must run at least one.",
              file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
