"""Keeps the top-level Bazel BUILD file in step with the source tree.

The checks live in tools/build_file.py (which also writes BUILD); they fail, printing
the exact stanza to paste (or: run `python tools/build_file.py`), when:
- a module in magenta_style/ has no `py_library`, or its deps disagree with the
  module's `from magenta_style import X` imports;
- a CLI (a magenta_style module or a tools/*.py script with a `__main__` block)
  has no `py_binary`;
- a tests/test_*.py file has no `py_test` (run by tests/bazel_pytest_main.py);
- a target names a file or a `:target` that does not exist.
"""
import importlib.util
import os
import pathlib
import sys
import textwrap

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "build_file", REPO_ROOT / "tools" / "build" / "build_file.py")
build_file = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_file)

PACKAGE = build_file.PACKAGE
INIT_TARGET = build_file.INIT_TARGET
RUNNER = build_file.RUNNER
TEST_SUPPORT = build_file.TEST_SUPPORT
parse_build = build_file.parse_build
package_modules = build_file.package_modules
find_test_files = build_file.find_test_files
all_problems = build_file.all_problems
stanza = build_file.stanza
expected_library = build_file.expected_library
expected_cli_binary = build_file.expected_cli_binary
expected_tool_binary = build_file.expected_tool_binary
expected_test = build_file.expected_test
check_references = build_file.check_references
check_libraries = build_file.check_libraries
check_binaries = build_file.check_binaries
check_tests = build_file.check_tests

# ------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def targets():
    return parse_build(REPO_ROOT)


def _fail_with(problems):
    if problems:
        pytest.fail(f"BUILD is out of date ({len(problems)} problem(s)):\n\n"
                    + "\n\n".join(problems), pytrace=False)


def test_build_targets_point_at_existing_files(targets):
    _fail_with(check_references(REPO_ROOT, targets))


def test_every_module_has_a_library_with_deps_matching_its_imports(targets):
    # An f-string, so that this file does not look like it runs config.py itself.
    assert f"{PACKAGE}/config.py" in package_modules(REPO_ROOT)
    _fail_with(check_libraries(REPO_ROOT, targets))


def test_every_cli_and_tool_has_a_binary(targets):
    _fail_with(check_binaries(REPO_ROOT, targets))


def test_every_test_file_has_a_py_test(targets):
    assert "tests/test_build_file.py" in find_test_files(REPO_ROOT)
    _fail_with(check_tests(REPO_ROOT, targets))


def _pkg(filename):
    # Built at run time so that this file's string constants name no real module.
    return f"{PACKAGE}/{filename}"


def _write(root, relpath, text):
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def mini_repo(tmp_path):
    """A tiny tree with one of each kind of file and a BUILD that matches it."""
    _write(tmp_path, RUNNER, "")
    _write(tmp_path, "tests/conftest.py", "")
    _write(tmp_path, _pkg("__init__.py"), "")
    _write(tmp_path, _pkg("a.py"), "import os\n")
    _write(tmp_path, _pkg("b.py"), "from magenta_style import a\n"
                                           "if __name__ == '__main__':\n    pass\n")
    _write(tmp_path, "tools/t.py", "from magenta_style import b\n"
                                   "if __name__ == '__main__':\n    pass\n")
    _write(tmp_path, "tests/test_b.py", "from magenta_style import b\nTOOL = 'tools/t.py'\n")
    root = tmp_path
    build = "\n\n".join([
        stanza("filegroup", name="test_support", srcs=["tests/conftest.py"]),
        expected_library(root, _pkg("__init__.py")),
        expected_library(root, _pkg("a.py")),
        expected_library(root, _pkg("b.py")),
        expected_cli_binary(_pkg("b.py")),
        expected_tool_binary(root, "tools/t.py"),
        expected_test(root, "tests/test_b.py"),
    ])
    _write(tmp_path, "BUILD", build + "\n")
    return tmp_path


def test_checker_accepts_the_stanzas_it_suggests(mini_repo):
    assert all_problems(mini_repo) == []
    targets = {t.name: t for t in parse_build(mini_repo)}
    assert targets["b"].strings("deps") == [":a", f":{INIT_TARGET}"]
    assert targets["test_b"].strings("data") == [":t", TEST_SUPPORT]


@pytest.mark.parametrize("change, expected_message", [
    (lambda r: _write(r, _pkg("c.py"), "x = 1\n"), 'name = "c"'),
    (lambda r: _write(r, _pkg("a.py"), "from magenta_style import b\n"),
     "missing [':b']"),
    (lambda r: _write(r, "tools/u.py", "if __name__ == '__main__':\n    pass\n"),
     "tool tools/u.py has no py_binary"),
    (lambda r: _write(r, "tests/test_c.py", "def test_c():\n    pass\n"),
     'args = ["tests/test_c.py"]'),
    (lambda r: (r / _pkg("a.py")).unlink(),
     f"names {_pkg('a.py')}, which does not exist"),
    (lambda r: _write(r, _pkg("a.py"), "if __name__ == '__main__':\n    pass\n"),
     'name = "a_main"'),
])
def test_checker_reports_what_to_change(mini_repo, change, expected_message):
    change(mini_repo)
    problems = "\n".join(all_problems(mini_repo))
    assert expected_message in problems


def _run_runner(run_command, tmp_path, test_source):
    _write(tmp_path, "test_sample.py", test_source)
    env = {k: v for k, v in os.environ.items() if k != "XML_OUTPUT_FILE"}
    return run_command([sys.executable, str(REPO_ROOT / RUNNER), "test_sample.py"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("source, exit_code", [
    ("def test_ok():\n    assert True\n", 0),
    ("def test_bad():\n    assert False\n", 1),
    ("X = 1\n", 5),
])
def test_bazel_runner_exit_code_follows_pytest(run_command, tmp_path, source, exit_code):
    result = _run_runner(run_command, tmp_path, source)
    assert result.returncode == exit_code, result.stdout + result.stderr
    if exit_code == 5:
        assert "collected no tests" in result.stderr



def test_generated_build_is_what_is_checked_in():
    # BUILD is written by tools/build_file.py; a hand edit it would undo shows here.
    assert build_file.generate(REPO_ROOT) == (REPO_ROOT / "BUILD").read_text()


def test_generator_output_passes_the_checker(mini_repo):
    _write(mini_repo, _pkg("c.py"), "from magenta_style import a\n")
    _write(mini_repo, "tests/test_c.py", "from magenta_style import c\n")
    (mini_repo / "BUILD").write_text(build_file.generate(mini_repo))
    assert all_problems(mini_repo) == []
    targets = {t.name: t for t in parse_build(mini_repo)}
    assert targets["c"].strings("deps") == [":a", f":{INIT_TARGET}"]
