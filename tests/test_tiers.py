"""The two test tiers: every heavy test carries the `slow` mark (pytest.ini registers it).

Heavy means it runs a subprocess, a training run, an export, TFLite or video, itself or
through a helper or fixture of its file or of tests/conftest.py. Marked means the file's
`pytestmark` includes `pytest.mark.slow`, the test has `@pytest.mark.slow`, or it uses the
`run_command` fixture, which conftest.py marks automatically. The scan reads the source
(ast), so it sees a heavy test without running it.
"""
import ast
import configparser
import pathlib
import textwrap

import pytest

TESTS_DIR = pathlib.Path(__file__).resolve().parent
MARKED_FIXTURE = "run_command"

# Dotted names (a call or a reference) that make a function heavy, by what they run.
HEAVY_NAMES = {
    "subprocess": "a subprocess",
    "sys.executable": "a subprocess",
    "os.system": "a subprocess",
    "train_lib.run": "a training run",
    "train.main": "a training run",
    "train.run_main": "a training run",
    "export_lib.export_saved_model": "an export",
    "export_lib.export_checkpoint": "an export",
    "export.main": "an export",
    "export.run_main": "an export",
    "stylize_video": "video",
    "av": "video",
}
# Any name, attribute or string containing one of these is heavy too.
HEAVY_SUBSTRINGS = {"tflite": "TFLite"}


def _dotted(node):
    """'a.b.c' for Name/Attribute chains, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


def _docstrings(function):
    return {id(node.body[0].value) for node in ast.walk(function)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def _direct_heaviness(function):
    """What heavy work `function`'s own body names (a reason string), or None."""
    docstrings = _docstrings(function)
    for node in ast.walk(function):
        texts = []
        if isinstance(node, (ast.Name, ast.Attribute)):
            dotted = _dotted(node)
            if dotted:
                for name, why in HEAVY_NAMES.items():
                    if dotted == name or dotted.startswith(name + "."):
                        return f"{why} ({dotted})"
                texts.append(dotted)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings):
            texts.append(node.value)
        for text in texts:
            for part, why in HEAVY_SUBSTRINGS.items():
                if part in text.lower():
                    return f"{why} ({text!r})"
    return None


def _is_slow_mark(node):
    return _dotted(node) == "pytest.mark.slow"


def _module_is_slow(tree):
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in statement.targets):
            values = (statement.value.elts if isinstance(statement.value, (ast.List, ast.Tuple))
                      else [statement.value])
            if any(_is_slow_mark(v) for v in values):
                return True
    return False


def _is_fixture(function):
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if _dotted(target) in ("pytest.fixture", "fixture"):
            return True
    return False


def _functions(tree):
    return {node.name: node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _names_used(function):
    used = {node.id for node in ast.walk(function) if isinstance(node, ast.Name)}
    used |= {arg.arg for arg in function.args.args + function.args.kwonlyargs}
    return used


def _heaviness(functions, fixtures_outside):
    """{function name: reason} for the heavy functions of one file, following calls to the
    file's functions and fixture parameters; fixtures_outside: conftest's {name: reason}."""
    reasons = {name: _direct_heaviness(f) for name, f in functions.items()}
    reasons = {name: why for name, why in reasons.items() if why}
    changed = True
    while changed:
        changed = False
        for name, function in functions.items():
            if name in reasons:
                continue
            for used in sorted(_names_used(function) - {name}):
                why = reasons.get(used) or (fixtures_outside.get(used)
                                            if used not in functions else None)
                if why:
                    reasons[name] = f"{why} via {used}"
                    changed = True
                    break
    return reasons


def _uses_marked_fixture(name, functions, seen=None):
    """Whether test or fixture `name` asks for run_command, itself or through fixtures."""
    seen = seen or set()
    function = functions[name]
    params = {arg.arg for arg in function.args.args}
    if MARKED_FIXTURE in params:
        return True
    return any(_uses_marked_fixture(p, functions, seen | {name}) for p in params
               if p in functions and p not in seen and _is_fixture(functions[p]))


def conftest_fixture_reasons(conftest_source):
    """{fixture name: reason} for the heavy fixtures of a conftest.py (run_command excluded:
    conftest marks its users)."""
    tree = ast.parse(conftest_source)
    functions = _functions(tree)
    reasons = _heaviness(functions, {})
    # A fixture that returns a heavy helper (`return _export_tiny_model`) is heavy to call.
    for name, function in functions.items():
        if _is_fixture(function) and name not in reasons:
            for node in ast.walk(function):
                if isinstance(node, ast.Return) and isinstance(node.value, ast.Name) \
                        and node.value.id in reasons:
                    reasons[name] = reasons[node.value.id]
    return {name: why for name, why in reasons.items()
            if _is_fixture(functions[name]) and name != MARKED_FIXTURE}


def unmarked_heavy_tests(source, fixtures_outside):
    """['test_x: reason', ...] for the heavy tests of a test file's source without the mark."""
    tree = ast.parse(source)
    if _module_is_slow(tree):
        return []
    functions = _functions(tree)
    reasons = _heaviness(functions, fixtures_outside)
    problems = []
    for name, function in functions.items():
        if not name.startswith("test") or name not in reasons:
            continue
        decorated = any(_is_slow_mark(d) for d in function.decorator_list)
        if not decorated and not _uses_marked_fixture(name, functions):
            problems.append(f"{name}: runs {reasons[name]}")
    return problems


def _conftest_reasons():
    return conftest_fixture_reasons((TESTS_DIR / "conftest.py").read_text())


def test_every_heavy_test_is_marked_slow():
    fixtures_outside = _conftest_reasons()
    problems = []
    for path in sorted(TESTS_DIR.glob("test_*.py")):
        problems += [f"{path.name}::{p}" for p in
                     unmarked_heavy_tests(path.read_text(), fixtures_outside)]
    assert not problems, (
        "heavy tests without the slow mark (add `@pytest.mark.slow`, `pytestmark = "
        "pytest.mark.slow` for the whole file, or start subprocesses with the run_command "
        "fixture):\n" + "\n".join(problems))


def test_conftest_export_fixture_counts_as_heavy():
    assert "export_tiny_model" in _conftest_reasons()


_SAMPLE = textwrap.dedent('''
    import subprocess
    import sys
    import pytest

    @pytest.fixture(scope="module")
    def exported(tmp_path_factory):
        return export_lib.export_saved_model(None, None, "x")

    def _cli(*args):
        return subprocess.run([sys.executable, *args])

    def test_light():
        assert 1 + 1 == 2

    def test_helper_subprocess():
        assert _cli("-c", "pass").returncode == 0

    def test_uses_export(exported):
        assert exported

    def test_conftest_export(export_tiny_model, tmp_path):
        assert export_tiny_model(tmp_path, 2, 0)

    def test_converter_script(load_script):
        load_script("tools/export_tflite.py")

    @pytest.mark.slow
    def test_marked_training():
        train_lib.run(None)

    def test_through_run_command(run_command):
        assert run_command([sys.executable, "-c", "pass"]).returncode == 0

    @pytest.fixture
    def cli(run_command):
        return run_command

    def test_through_a_fixture_of_run_command(cli):
        assert cli(["true"]).returncode == 0
''')


def test_the_scan_finds_unmarked_heavy_tests_and_accepts_marked_ones():
    problems = unmarked_heavy_tests(_SAMPLE, {"export_tiny_model": "an export"})
    assert [p.split(":")[0] for p in problems] == [
        "test_helper_subprocess", "test_uses_export", "test_conftest_export",
        "test_converter_script"]
    assert "a subprocess" in problems[0] and "via _cli" in problems[0]
    whole_file = "import pytest\npytestmark = [pytest.mark.slow]\n" + _SAMPLE
    assert unmarked_heavy_tests(whole_file, {"export_tiny_model": "an export"}) == []


def test_pytest_ini_is_the_only_config_and_registers_slow():
    root = TESTS_DIR.parent
    others = [name for name in ("pyproject.toml", "setup.cfg", "tox.ini", "tests/pytest.ini")
              if (root / name).is_file() and "pytest" in (root / name).read_text()]
    assert others == []
    ini = configparser.ConfigParser()
    ini.read(root / "pytest.ini")
    assert ini["pytest"]["markers"].strip().startswith("slow:")
    assert "--strict-markers" in ini["pytest"]["addopts"]


def test_run_command_marks_its_tests_slow(request):
    # This test does not ask for run_command; conftest marks only those that do.
    assert request.node.get_closest_marker("slow") is None


def test_run_command_is_marked(run_command, request):
    assert request.node.get_closest_marker("slow") is not None
    assert run_command(["true"]).returncode == 0


@pytest.mark.parametrize("unused", [0])
def test_parametrized_tests_are_scanned_like_others(unused):
    source = textwrap.dedent('''
        import pytest
        @pytest.mark.parametrize("x", [1])
        def test_p(x, export_tiny_model):
            pass
    ''')
    assert unmarked_heavy_tests(source, {"export_tiny_model": "an export"}) == [
        "test_p: runs an export via export_tiny_model"]
