"""Keeps the top-level Bazel BUILD file in step with the source tree.

BUILD is written by hand. These tests parse it (Starlark here is Python syntax)
and fail, printing the exact stanza to paste, when:
- a module in magenta_style/ has no `py_library`, or its deps disagree with the
  module's `from magenta_style import X` imports;
- a CLI (a magenta_style module or a tools/*.py script with a `__main__` block)
  has no `py_binary`;
- a tests/test_*.py file has no `py_test` (run by tests/bazel_pytest_main.py);
- a target names a file or a `:target` that does not exist.
"""
import ast
import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "magenta_style"
INIT_TARGET = "package_init"
RUNNER = "tests/bazel_pytest_main.py"
TEST_SUPPORT = ":test_support"
RULES = ("py_library", "py_binary", "py_test", "filegroup")
TEST_SIZES = ("small", "medium", "large", "enormous")
TEST_TIMEOUTS = ("short", "moderate", "long", "eternal")


@dataclasses.dataclass
class Target:
    """One rule call in BUILD; attrs hold evaluated values (glob() -> list of paths)."""

    kind: str
    name: str
    attrs: dict
    line: int

    def strings(self, attr):
        value = self.attrs.get(attr, [])
        return [value] if isinstance(value, str) else list(value)


class BuildFileError(Exception):
    """BUILD uses something this checker cannot evaluate."""


# ---------------------------------------------------------------- BUILD parsing


def _glob(root, include, exclude):
    def expand(patterns):
        return {p.relative_to(root).as_posix() for pattern in patterns
                for p in root.glob(pattern) if p.is_file()}
    return sorted(expand(include) - expand(exclude))


def _evaluate(node, root):
    """Evaluates the small Starlark subset BUILD may use: literals, lists, +, glob()."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, bool)):
        return node.value
    if isinstance(node, ast.List):
        return [_evaluate(element, root) for element in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _evaluate(node.left, root) + _evaluate(node.right, root)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "glob"):
        kwargs = {k.arg: _evaluate(k.value, root) for k in node.keywords}
        include = _evaluate(node.args[0], root) if node.args else kwargs.get("include", [])
        return _glob(root, include, kwargs.get("exclude", []))
    raise BuildFileError(f"BUILD line {node.lineno}: unsupported expression "
                         f"{ast.unparse(node)!r}; use literals, lists, + and glob() only")


def parse_build(root):
    """Returns the rule calls of root/BUILD as a list of Target."""
    tree = ast.parse((root / "BUILD").read_text(), filename="BUILD")
    targets = []
    for statement in tree.body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            raise BuildFileError(f"BUILD line {statement.lineno}: only rule calls are allowed")
        if call.func.id in ("load", "package", "exports_files", "licenses"):
            continue
        if call.func.id not in RULES:
            raise BuildFileError(f"BUILD line {statement.lineno}: unexpected rule "
                                 f"{call.func.id}; the checker knows {', '.join(RULES)}")
        attrs = {k.arg: _evaluate(k.value, root) for k in call.keywords}
        targets.append(Target(call.func.id, attrs.get("name", ""), attrs, statement.lineno))
    return targets


# ------------------------------------------------------------ source analysis


def library_name(relpath):
    """Target name for a package file: magenta_style/a.py -> "a", sub/b.py -> "sub_b".

    The root magenta_style/__init__.py becomes INIT_TARGET.
    """
    parts = pathlib.PurePosixPath(relpath).with_suffix("").parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "_".join(parts) if parts else INIT_TARGET


def _module_file(root, dotted):
    """Path (relative) of the file defining dotted module `magenta_style.x.y`, or None."""
    base = pathlib.PurePosixPath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / candidate).is_file():
            return candidate.as_posix()
    return None


def _package_libraries(root, dotted):
    """Library names needed to import dotted module `dotted` (the module and its packages)."""
    names = set()
    parts = dotted.split(".")
    for end in range(1, len(parts) + 1):
        relpath = _module_file(root, ".".join(parts[:end]))
        if relpath:
            names.add(library_name(relpath))
    return names


def imported_modules(root, relpath):
    """Dotted magenta_style modules that the Python file root/relpath imports (anywhere in it)."""
    tree = ast.parse((root / relpath).read_text(), filename=relpath)
    package = ".".join(pathlib.PurePosixPath(relpath).parent.parts)
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                modules.add(submodule if _module_file(root, submodule) else base)
    return {m for m in modules if m == PACKAGE or m.startswith(PACKAGE + ".")}


def library_deps(root, relpath):
    """The ":label"s a target for root/relpath must depend on for its magenta_style imports."""
    names = set()
    for module in imported_modules(root, relpath):
        names |= _package_libraries(root, module)
    if relpath.startswith(PACKAGE + "/"):
        # A module's own packages (their __init__.py) must be importable too.
        names |= _package_libraries(root, ".".join(pathlib.PurePosixPath(relpath).parent.parts))
        names.discard(library_name(relpath))
    return {f":{name}" for name in names}


def has_main_block(root, relpath):
    """Whether root/relpath has a top-level `if __name__ == "__main__":` block."""
    tree = ast.parse((root / relpath).read_text(), filename=relpath)
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [ast.unparse(n) for n in [node.test.left, *node.test.comparators]]
            if "__name__" in names and ("'__main__'" in names or '"__main__"' in names):
                return True
    return False


def _string_constants(root, relpath):
    tree = ast.parse((root / relpath).read_text(), filename=relpath)
    return {n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def referenced_tools(root, relpath):
    """tools/*.py scripts that a test names (e.g. to run it in a subprocess)."""
    strings = _string_constants(root, relpath)
    tools = set()
    for tool in sorted((root / "tools").glob("*.py")):
        path = f"tools/{tool.name}"
        if any(s.endswith(path) for s in strings) or ("tools" in strings and tool.name in strings):
            tools.add(path)
    return tools


# Non-Python files tests read from the tree; a py_test must list them in `data`.
DATA_DIRS = ("configs", "notebooks")


def referenced_data_files(root, relpath):
    """configs/ and notebooks/ files a test names (as "dir/name" or "name" next to "dir")."""
    strings = _string_constants(root, relpath)
    files = set()
    for directory in DATA_DIRS:
        for item in sorted((root / directory).glob("*")):
            path = f"{directory}/{item.name}"
            if any(s.endswith(path) for s in strings) or (
                    directory in strings and item.name in strings):
                files.add(path)
    return files


def referenced_package_modules(root, relpath):
    """magenta_style modules a test names as strings (`-m magenta_style.x`, a path)."""
    modules = set()
    for s in _string_constants(root, relpath):
        match = re.fullmatch(rf"{PACKAGE}\.([\w.]+)", s) or re.search(
            rf"(?:^|/){PACKAGE}/(\w+)\.py$", s)
        if match and _module_file(root, f"{PACKAGE}.{match.group(1)}"):
            modules.add(f"{PACKAGE}.{match.group(1)}")
    return modules


def local_test_helpers(root, relpath):
    """tests/*.py helper modules (not conftest) that a test file imports."""
    tree = ast.parse((root / relpath).read_text(), filename=relpath)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return {f"tests/{n}.py" for n in names if "." not in n and n != "conftest"
            and (root / "tests" / f"{n}.py").is_file()}


# ------------------------------------------------------------- stanzas to paste


def _format_list(values):
    if not values:
        return "[]"
    if len(values) == 1:
        return f'["{values[0]}"]'
    return "[\n" + "".join(f'        "{v}",\n' for v in values) + "    ]"


def stanza(kind, **attrs):
    """BUILD text for one rule, attributes in the given order (None and [] left out)."""
    lines = [f"{kind}("]
    for key, value in attrs.items():
        if value is None or value == []:
            continue
        text = _format_list(value) if isinstance(value, list) else f'"{value}"'
        lines.append(f"    {key} = {text},")
    return "\n".join(lines + [")"])


def _tool_binary_name(root, relpath):
    stem = pathlib.PurePosixPath(relpath).stem
    library_names = {library_name(p) for p in package_modules(root)}
    return f"{stem}_tool" if stem in library_names else stem


def expected_library(root, relpath):
    return stanza("py_library", name=library_name(relpath), srcs=[relpath],
                  imports=["."] if library_name(relpath) == INIT_TARGET else None,
                  deps=sorted(library_deps(root, relpath)))


def expected_cli_binary(relpath):
    return stanza("py_binary", name=f"{library_name(relpath)}_main", srcs=[relpath],
                  main=relpath, deps=[f":{library_name(relpath)}"])


def expected_tool_binary(root, relpath):
    return stanza("py_binary", name=_tool_binary_name(root, relpath), srcs=[relpath],
                  main=relpath, deps=sorted(library_deps(root, relpath)))


def py_test_deps(root, relpath):
    """The ":label"s a py_test must depend on: imported and `-m`-run magenta_style modules."""
    deps = set(library_deps(root, relpath))
    for module in referenced_package_modules(root, relpath):
        deps |= {f":{n}" for n in _package_libraries(root, module)}
    return deps


def py_test_data(root, relpath):
    """What a py_test needs as data: conftest.py etc., the tools it runs, and the
    configs/ and notebooks/ files it reads."""
    tools = {f":{_tool_binary_name(root, t)}" for t in referenced_tools(root, relpath)}
    return {TEST_SUPPORT} | tools | referenced_data_files(root, relpath)


def expected_test(root, relpath):
    helpers = sorted(local_test_helpers(root, relpath))
    return stanza("py_test", name=pathlib.PurePosixPath(relpath).stem, size="medium",
                  srcs=[RUNNER, relpath, *helpers], args=[relpath], main=RUNNER,
                  data=sorted(py_test_data(root, relpath)),
                  deps=sorted(py_test_deps(root, relpath)))


# ------------------------------------------------------------------- checks


def package_modules(root):
    return sorted(p.relative_to(root).as_posix() for p in (root / PACKAGE).rglob("*.py")
                  if "__pycache__" not in p.parts)


def tool_scripts(root):
    return sorted(f"tools/{p.name}" for p in (root / "tools").glob("*.py"))


def find_test_files(root):
    return sorted(f"tests/{p.name}" for p in (root / "tests").glob("test_*.py"))


def _local_labels(target, attr):
    return {label for label in target.strings(attr) if label.startswith(":")}


def check_libraries(root, targets):
    problems = []
    for relpath in package_modules(root):
        libraries = [t for t in targets if t.kind == "py_library" and relpath in t.strings("srcs")]
        if len(libraries) != 1 or libraries[0].strings("srcs") != [relpath]:
            problems.append(f"{relpath} needs exactly one py_library with srcs = [\"{relpath}\"] "
                            f"(found {[t.name for t in libraries]}). Add to BUILD:\n"
                            + expected_library(root, relpath))
            continue
        library = libraries[0]
        want, have = library_deps(root, relpath), _local_labels(library, "deps")
        if want != have:
            problems.append(
                f"py_library {library.name} (BUILD line {library.line}) deps disagree with the "
                f"imports of {relpath}: missing {sorted(want - have)}, extra {sorted(have - want)}."
                f" It should read:\n" + expected_library(root, relpath))
    return problems


def _binary_for(targets, relpath):
    return [t for t in targets if t.kind == "py_binary" and t.attrs.get("main") == relpath]


def check_binaries(root, targets):
    problems = []
    for relpath in package_modules(root):
        if not has_main_block(root, relpath):
            continue
        binaries = _binary_for(targets, relpath)
        if not binaries:
            problems.append(f"CLI {relpath} has no py_binary. Add to BUILD:\n"
                            + expected_cli_binary(relpath))
        for binary in binaries:
            if f":{library_name(relpath)}" not in binary.strings("deps"):
                problems.append(f"py_binary {binary.name} (BUILD line {binary.line}) must depend "
                                f"on :{library_name(relpath)}:\n" + expected_cli_binary(relpath))
    for relpath in tool_scripts(root):
        if not has_main_block(root, relpath):
            if not any(relpath in t.strings("srcs") for t in targets):
                problems.append(f"{relpath} (no __main__ block) is in no target's srcs; add it "
                                f"to the py_library or py_binary that uses it.")
            continue
        binaries = _binary_for(targets, relpath)
        if not binaries:
            problems.append(f"tool {relpath} has no py_binary. Add to BUILD:\n"
                            + expected_tool_binary(root, relpath))
        for binary in binaries:
            want = library_deps(root, relpath)
            have = {d for d in _local_labels(binary, "deps")
                    if d[1:] in {library_name(p) for p in package_modules(root)}}
            if want != have:
                problems.append(
                    f"py_binary {binary.name} (BUILD line {binary.line}) deps disagree with the "
                    f"imports of {relpath}: missing {sorted(want - have)}, extra "
                    f"{sorted(have - want)}. It should read:\n"
                    + expected_tool_binary(root, relpath))
    return problems


def check_tests(root, targets):
    problems = []
    for relpath in find_test_files(root):
        tests = [t for t in targets if t.kind == "py_test" and t.strings("args")[:1] == [relpath]]
        expected = expected_test(root, relpath)
        if len(tests) != 1:
            problems.append(f"{relpath} needs exactly one py_test with args = [\"{relpath}\"] "
                            f"(found {[t.name for t in tests]}). Add to BUILD:\n{expected}")
            continue
        test = tests[0]
        where = f"py_test {test.name} (BUILD line {test.line})"
        helpers = local_test_helpers(root, relpath)
        if (test.attrs.get("main") != RUNNER
                or not {RUNNER, relpath, *helpers} <= set(test.strings("srcs"))):
            problems.append(f"{where} must have main = \"{RUNNER}\" and srcs "
                            f"{sorted({RUNNER, relpath, *helpers})}:\n{expected}")
        if test.attrs.get("size") not in TEST_SIZES:
            problems.append(f"{where} needs size = one of {TEST_SIZES} (how long it runs).")
        if test.attrs.get("timeout", "short") not in TEST_TIMEOUTS:
            problems.append(f"{where} has timeout {test.attrs['timeout']!r}; "
                            f"use one of {TEST_TIMEOUTS}.")
        have_deps = _local_labels(test, "deps")
        missing = py_test_deps(root, relpath) - have_deps
        missing_data = py_test_data(root, relpath) - (set(test.strings("data")) | have_deps)
        if missing or missing_data:
            problems.append(f"{where} lacks deps {sorted(missing)} and data "
                            f"{sorted(missing_data)} that {relpath} imports or runs:\n{expected}")
    return problems


def check_references(root, targets):
    problems = []
    names = [t.name for t in targets]
    for name in sorted({n for n in names if names.count(n) > 1 or not n}):
        problems.append(f"target name {name!r} is empty or used twice in BUILD")
    for target in targets:
        where = f"{target.kind} {target.name} (BUILD line {target.line})"
        files = target.strings("srcs") + target.strings("data") + target.strings("main")
        files += [a for a in target.strings("args") if a.endswith(".py")]
        for item in files:
            if item.startswith((":", "//", "@")):
                continue
            if not (root / item).is_file():
                problems.append(f"{where} names {item}, which does not exist; remove or fix it.")
        for attr in ("srcs", "data", "deps"):
            for label in _local_labels(target, attr):
                if label[1:] not in names:
                    problems.append(f"{where} {attr} names {label}, which BUILD does not define.")
        if target.kind in ("py_binary", "py_test"):
            main = target.attrs.get("main")
            if main not in target.strings("srcs"):
                problems.append(f"{where} needs main = one of its srcs (main is {main!r}).")
    return problems


def all_problems(root):
    targets = parse_build(root)
    return (check_references(root, targets) + check_libraries(root, targets)
            + check_binaries(root, targets) + check_tests(root, targets))


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


def _run_runner(tmp_path, test_source):
    _write(tmp_path, "test_sample.py", test_source)
    env = {k: v for k, v in os.environ.items() if k != "XML_OUTPUT_FILE"}
    return subprocess.run([sys.executable, str(REPO_ROOT / RUNNER), "test_sample.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("source, exit_code", [
    ("def test_ok():\n    assert True\n", 0),
    ("def test_bad():\n    assert False\n", 1),
    ("X = 1\n", 5),
])
def test_bazel_runner_exit_code_follows_pytest(tmp_path, source, exit_code):
    result = _run_runner(tmp_path, source)
    assert result.returncode == exit_code, result.stdout + result.stderr
    if exit_code == 5:
        assert "collected no tests" in result.stderr
