"""Writes and checks the top-level Bazel BUILD file from the source tree.

    python tools/build/build_file.py          # rewrite BUILD to match the tree
    python tools/build/build_file.py --check  # regenerate and diff; exit 1 if out of date

(`python tools/build_file.py` is an alias.)

BUILD is generated: one `py_library` per magenta_style module (deps follow its
`from magenta_style import X` imports), one `py_binary` per CLI (a module or a
tools/*.py or tools/<audience>/*.py script with a `__main__` block; an alias left at a
script's old tools/ path is in that binary's srcs), one `py_test` per tests/test_*.py (run
by tests/bazel_pytest_main.py, with the tools it runs and the configs/ and
notebooks/ files it reads as data). A py_test's `size` and `timeout` are kept from
the current BUILD, since they record how long the test was measured to run.

Checking is regenerating: `--check` and tests/test_build_file.py compare BUILD with the
text this script would write. The rules are compared one by one (`differences`), so a
failure names the rule, what it lacks or has too much of, and the stanza to paste;
`--check` adds the unified diff of the whole text. Standard library only.
"""
import ast
import dataclasses
import difflib
import functools
import pathlib
import re
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = "magenta_style"
INIT_TARGET = "package_init"
RUNNER = "tests/bazel_pytest_main.py"
TEST_SUPPORT = ":test_support"
BUILD_CHECK_INPUTS = ":build_check_inputs"
CHECKER_TEST = "tests/test_build_file.py"
CONFTEST = "tests/conftest.py"
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


def parse_build(root, text=None):
    """Returns the rule calls of root/BUILD (or of BUILD text `text`) as a list of Target."""
    tree = ast.parse((root / "BUILD").read_text() if text is None else text, filename="BUILD")
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


@functools.lru_cache(maxsize=None)
def _parse_file(path, mtime_ns, size):
    """(ast, its import nodes, its string constants) of one version of a file."""
    del mtime_ns, size  # The cache key: a file written since is read again.
    tree = ast.parse(pathlib.Path(path).read_text(), filename=path)
    nodes = list(ast.walk(tree))
    imports = [n for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))]
    strings = frozenset(n.value for n in nodes
                        if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return tree, imports, strings


def _facts(root, relpath):
    """_parse_file of root/relpath: each file is walked once per version (the checks ask
    about the same files hundreds of times)."""
    path = root / relpath
    stat = path.stat()
    return _parse_file(str(path), stat.st_mtime_ns, stat.st_size)


def _parse(root, relpath):
    return _facts(root, relpath)[0]


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
    package = ".".join(pathlib.PurePosixPath(relpath).parent.parts)
    modules = set()
    for node in _facts(root, relpath)[1]:
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
    tree = _parse(root, relpath)
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [ast.unparse(n) for n in [node.test.left, *node.test.comparators]]
            if "__name__" in names and ("'__main__'" in names or '"__main__"' in names):
                return True
    return False


def _string_constants(root, relpath):
    return set(_facts(root, relpath)[2])


def referenced_tools(root, relpath):
    """tools/ scripts that a test names (e.g. to run it in a subprocess); an alias counts as
    the script it runs."""
    strings = _string_constants(root, relpath)
    tools = set()
    for path in tool_scripts(root) + tool_aliases(root):
        name = pathlib.PurePosixPath(path).name
        if any(s.endswith(path) for s in strings) or ("tools" in strings and name in strings):
            tools.add(alias_target(root, path) or path)
    return tools


# Non-Python files tests read from the tree; a py_test must list them in `data`.
DATA_DIRS = ("configs", "notebooks", "docs")


# Top-level files tests may read (by name).
DATA_FILES = ("README.md",)


def referenced_data_files(root, relpath):
    """configs/, notebooks/ and docs/ files a test names (as "dir/name", or "name" or a glob
    next to "dir"),
    and the top-level DATA_FILES it names."""
    strings = _string_constants(root, relpath)
    files = {name for name in DATA_FILES if name in strings and (root / name).is_file()}
    for directory in DATA_DIRS:
        for item in sorted((root / directory).glob("*")):
            path = f"{directory}/{item.name}"
            # "dir/name", or "dir" with "name" or a glob such as "*.md" that matches it.
            if any(s.endswith(path) for s in strings) or (directory in strings and (
                    item.name in strings
                    or any("*" in s and item.match(s) for s in strings))):
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
    names = set()
    for node in _facts(root, relpath)[1]:
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
    aliases = sorted(a for a in tool_aliases(root) if alias_target(root, a) == relpath)
    return stanza("py_binary", name=_tool_binary_name(root, relpath), srcs=[relpath, *aliases],
                  main=relpath, deps=sorted(library_deps(root, relpath)))


def py_test_deps(root, relpath):
    """The ":label"s a py_test must depend on: imported and `-m`-run magenta_style modules."""
    deps = set(library_deps(root, relpath))
    if (root / CONFTEST).is_file():
        deps |= library_deps(root, CONFTEST)  # Its fixtures import modules for every test.
    for module in referenced_package_modules(root, relpath):
        deps |= {f":{n}" for n in _package_libraries(root, module)}
    return deps


def py_test_data(root, relpath):
    """What a py_test needs as data: conftest.py etc., the tools it runs, and the
    configs/, notebooks/ and docs/ files it reads."""
    tools = {f":{_tool_binary_name(root, t)}" for t in referenced_tools(root, relpath)}
    data = {TEST_SUPPORT} | tools | referenced_data_files(root, relpath)
    if relpath == CHECKER_TEST:
        data.add(BUILD_CHECK_INPUTS)  # It reads the whole tree: any change re-runs it.
    return data


def expected_test(root, relpath, size="medium", timeout=None):
    helpers = sorted(local_test_helpers(root, relpath))
    return stanza("py_test", name=pathlib.PurePosixPath(relpath).stem, size=size,
                  timeout=timeout, srcs=[RUNNER, relpath, *helpers], args=[relpath], main=RUNNER,
                  data=sorted(py_test_data(root, relpath)),
                  deps=sorted(py_test_deps(root, relpath)))


# ------------------------------------------------------------------- checks


def package_modules(root):
    return sorted(p.relative_to(root).as_posix() for p in (root / PACKAGE).rglob("*.py")
                  if "__pycache__" not in p.parts)


_QUOTED_PATH = re.compile(r"[\"']((?:\w+/)+\w+\.py)[\"']")


def alias_target(root, relpath):
    """For a thin alias left at a script's old tools/ path (it runs the moved script with
    runpy), the moved script's path; else None."""
    if not relpath.startswith("tools/") or relpath.count("/") != 1:
        return None
    text = (root / relpath).read_text()
    if "runpy.run_path(" not in text:
        return None
    for match in _QUOTED_PATH.finditer(text):
        if (root / "tools" / match.group(1)).is_file():
            return f"tools/{match.group(1)}"
    return None


def tool_aliases(root):
    return sorted(f"tools/{p.name}" for p in (root / "tools").glob("*.py")
                  if alias_target(root, f"tools/{p.name}"))


def tool_scripts(root):
    """tools/*.py and tools/<audience>/*.py, without the aliases."""
    paths = [p.relative_to(root).as_posix() for pattern in ("*.py", "*/*.py")
             for p in (root / "tools").glob(pattern)]
    return sorted(p for p in paths if not alias_target(root, p))


def find_test_files(root):
    return sorted(f"tests/{p.name}" for p in (root / "tests").glob("test_*.py"))


def _local_labels(target, attr):
    return {label for label in target.strings(attr) if label.startswith(":")}


GENERATED_RULES = ("py_library", "py_binary", "py_test")


def _subject(target):
    """What a generated rule is for, as the problems name it."""
    if target.kind == "py_library":
        return target.strings("srcs")[0]
    if target.kind == "py_binary":
        main = target.attrs.get("main", "")
        return f"{'CLI' if main.startswith(PACKAGE + '/') else 'tool'} {main}"
    return target.strings("args")[0]


def _attr_difference(attr, want, have):
    if isinstance(want, list) and isinstance(have, list):
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        if missing or extra:
            return f"{attr}: missing {missing}, extra {extra}"
        return f"{attr}: not in the generated order"
    return f"{attr} is {have!r}, should be {want!r}"


def differences(root, targets, kinds=GENERATED_RULES):
    """BUILD regenerated from the tree and compared with `targets` (BUILD as parsed),
    rule by rule, for the rules of `kinds`: one problem per rule that is missing, differs
    (saying which attributes, then the stanza to paste) or is no longer needed."""
    expected = {}
    for text in expected_stanzas(root):
        (target,) = parse_build(root, text)
        expected[(target.kind, target.name)] = (target, text)
    have = {(t.kind, t.name): t for t in targets if t.kind in kinds}
    problems = []
    for key, (want, text) in expected.items():
        if want.kind not in kinds:
            continue
        target = have.get(key)
        if target is None:
            problems.append(f"{_subject(want)} has no {want.kind}. Add to BUILD:\n{text}")
            continue
        changed = [_attr_difference(attr, want.attrs.get(attr), target.attrs.get(attr))
                   for attr in sorted(set(want.attrs) | set(target.attrs))
                   if want.attrs.get(attr) != target.attrs.get(attr)]
        if changed:
            problems.append(f"{target.kind} {target.name} (BUILD line {target.line}) differs "
                            f"from what the tree needs: {'; '.join(changed)}. It should "
                            f"read:\n{text}")
    for key, target in have.items():
        if key not in expected:
            problems.append(f"{target.kind} {target.name} (BUILD line {target.line}) is not "
                            "needed by the tree (its file is gone, or it no longer has a "
                            "__main__ block): remove it.")
    return problems


def check_libraries(root, targets):
    return differences(root, targets, ("py_library",))


def check_binaries(root, targets):
    return differences(root, targets, ("py_binary",))


def check_tests(root, targets):
    return differences(root, targets, ("py_test",))


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
    return check_references(root, targets) + differences(root, targets)



# ------------------------------------------------------------------- generation

_HEADER = """\
# Bazel targets for magenta_style (Bazel 4.2.3, native rules; see README "Bazel").
# GENERATED by tools/build/build_file.py from the source tree: run `python tools/build_file.py` after
# adding a module, tool or test, or changing imports (tests/test_build_file.py checks it).
# Third-party packages (TensorFlow, Keras, numpy, ...) come from the project venv on PATH, so
# they are not deps here.

package(default_visibility = ["//visibility:public"])

# Files every py_test needs besides its own sources: pytest's conftest.py, pytest settings if any,
# and non-Python test data.
filegroup(
    name = "test_support",
    srcs = ["tests/conftest.py"] + glob(
        [
            "pytest.ini",
            "pyproject.toml",
            "setup.cfg",
            "configs/**",
            "tests/**",
        ],
        exclude = [
            "tests/**/*.py",
            "**/__pycache__/**",
        ],
    ),
)

# What tests/test_build_file.py compares BUILD with; as data, a change re-runs that test.
filegroup(
    name = "build_check_inputs",
    srcs = ["BUILD"] + glob([
        "magenta_style/**/*.py",
        "tools/**/*.py",
        "tests/*.py",
    ]),
)
"""


def _kept_test_attrs(root):
    """{test relpath: {"size": ..., "timeout": ...}} from the current BUILD, if it parses
    (values Bazel does not know are dropped, so the regenerated text shows them)."""
    try:
        targets = parse_build(root)
    except (OSError, SyntaxError, BuildFileError):
        return {}
    allowed = {"size": TEST_SIZES, "timeout": TEST_TIMEOUTS}
    kept = {}
    for target in targets:
        if target.kind == "py_test" and target.strings("args"):
            kept[target.strings("args")[0]] = {k: target.attrs[k] for k in allowed
                                               if target.attrs.get(k) in allowed[k]}
    return kept


def _sections(root):
    """(libraries, binaries, tests): the generated rules' stanzas, in BUILD order."""
    kept = _kept_test_attrs(root)
    libraries = [expected_library(root, p) for p in package_modules(root)]
    binaries = [expected_cli_binary(p) for p in package_modules(root) if has_main_block(root, p)]
    binaries += [expected_tool_binary(root, p) for p in tool_scripts(root)
                 if has_main_block(root, p)]
    tests = [expected_test(root, p, **kept.get(p, {})) for p in find_test_files(root)]
    return libraries, binaries, tests


def expected_stanzas(root):
    """Every generated rule's stanza (py_library, py_binary, py_test), in BUILD order."""
    return [text for section in _sections(root) for text in section]


def generate(root):
    """The text of BUILD for the tree at `root`."""
    libraries, binaries, tests = _sections(root)
    sections = [_HEADER.rstrip("\n")]
    sections.append("# Libraries: one per module of the magenta_style package; deps follow its "
                    "magenta_style imports.\n" + "\n\n".join(libraries))
    sections.append("# Command-line programs: `bazel run //:<name> -- --flag=value`.\n"
                    + "\n\n".join(binaries))
    sections.append("# Tests: one py_test per tests/test_*.py, each run by pytest through "
                    "tests/bazel_pytest_main.py.\n" + "\n\n".join(tests))
    return "\n\n".join(sections) + "\n"


def check(root):
    """--check: BUILD regenerated and diffed with the file. Returns (problems, diff text):
    the rules that differ, explained (all_problems), and the unified diff of the text."""
    problems = all_problems(root)
    current = (root / "BUILD").read_text()
    diff = "".join(difflib.unified_diff(current.splitlines(True), generate(root).splitlines(True),
                                        "BUILD", "BUILD (generated)"))
    return problems, diff


def main(argv):
    root = REPO_ROOT
    if argv[1:] == ["--check"]:
        problems, diff = check(root)
        if not (problems or diff):
            print("BUILD is up to date")
            return 0
        print("\n\n".join(problems + [diff]).strip()
              + "\n\nBUILD is out of date: run python tools/build/build_file.py")
        return 1
    if argv[1:]:
        print("usage: python tools/build/build_file.py [--check]", file=sys.stderr)
        return 2
    text = generate(root)
    path = root / "BUILD"
    tmp = path.with_name(".BUILD.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    problems = all_problems(root)
    print(f"wrote {path} ({text.count(chr(10))} lines)"
          + (": still out of date:\n" + "\n".join(problems) if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
