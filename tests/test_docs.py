"""The README and docs/*.md cannot drift from the code.

- Every ```python block runs, on tiny inputs. A block that needs set-up says so in an HTML
  comment on the line just above its fence, as JSON:
  `<!-- docs-test {"images": [...], "maps": [...], "replace": {old: new}, "setup": "export"} -->`
  ("images": tiny RGB files to draw under those names; "maps": two-colour semantic maps;
  "replace": text swapped before running, e.g. a downloaded checkpoint for the stand-in;
  "setup": "export" gives a tiny export at exports/magenta_style/1 and the arrays `images`
  and `style_weights`, "tflite" adds style.tflite and `image`, `weights`). A block that
  cannot run here says why: `{"skip": "reason"}`; it is still compiled.
- Every shell command shown in a code block is parsed: `python -m magenta_style.X ...` with
  that command's own absl flags (unknown flags, bad values and missing required flags fail),
  and `python tools/X.py ...` against the flags the tool defines.
"""
import ast
import copy
import importlib
import json
import pathlib
import re
import shlex
import shutil

import numpy as np
import pytest
from absl import flags
from PIL import Image

from magenta_style import cli

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC_FILES = ["README.md"] + sorted(f"docs/{p.name}" for p in (REPO_ROOT / "docs").glob("*.md"))
_MARKER = re.compile(r"^<!--\s*docs-test\s+(\{.*\})\s*-->\s*$")
_FENCE = re.compile(r"^```(\w*)\s*$")


def _code_blocks(relpath):
    """[(language, first line number, text, marker dict or None)] of a markdown file: fenced
    blocks, and indented (4-space) blocks as language "indented"."""
    lines = (REPO_ROOT / relpath).read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence:
            marker = _MARKER.match(lines[i - 1]) if i else None
            end = i + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            blocks.append((fence.group(1) or "text", i + 2, "\n".join(lines[i + 1:end]),
                           json.loads(marker.group(1)) if marker else None))
            i = end + 1
            continue
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            blocks.append(("indented", i + 1,
                           "\n".join(line[4:] for line in lines[i:end]).rstrip(), None))
            i = end
            continue
        i += 1
    return blocks


def _python_blocks():
    return [pytest.param(relpath, line, text, marker or {}, id=f"{relpath}:{line}")
            for relpath in DOC_FILES
            for language, line, text, marker in _code_blocks(relpath) if language == "python"]


_COMMAND = re.compile(r"(?:^|&&|;|\|)\s*(?:\$\s+)?(?:python3?\s+(-m\s+(magenta_style\.[\w.]+)|"
                      r"(tools/[\w/]+\.py))|magenta-style-([\w-]+))((?:\s+[^&;|]*)?)")


def _shell_commands():
    """[(relpath, line, module or tool path, argv)] for the commands in the docs' code blocks."""
    found = []
    for relpath in DOC_FILES:
        for language, line, text, _ in _code_blocks(relpath):
            if language not in ("sh", "bash", "shell", "console", "text", "indented"):
                continue
            joined = re.sub(r"\\\n\s*", " ", text)
            for row in joined.splitlines():
                for match in _COMMAND.finditer(re.sub(r"(^|\s)#.*$", "", row)):
                    module, tool, script, rest = (match.group(2), match.group(3),
                                                  match.group(4), match.group(5))
                    if script:
                        module = "magenta_style." + script.replace("-", "_")
                    # "[--flag=x]" in a usage line means optional; the flag must still exist.
                    rest = re.sub(r"\[(--[^\s\]]*)\]", r"\1", rest.split(" > ")[0])
                    found.append((relpath, line, module or tool, shlex.split(rest)))
    return found


def _command_flag_values(module_name):
    """A fresh FlagValues holding exactly the flags of command `module_name`."""
    module = importlib.import_module(module_name)
    if callable(getattr(module, "_define_flags", None)):  # Every package command.
        return cli.new_flag_values(module._define_flags)
    # A command with module-level absl flags: copy them out of the global FlagValues.
    fv = flags.FlagValues()
    for flag in flags.FLAGS.get_flags_for_module(module_name):
        fv[flag.name] = copy.deepcopy(flag)
    assert len(list(fv)) > 0, f"{module_name} defines no flags this test can find"
    return fv


def _tool_flag_names(path):
    """Flag names a tools/ script defines (absl DEFINE_* or argparse --name), read from its
    source and from the scripts it forwards to (thin aliases)."""
    source = (REPO_ROOT / path).read_text()
    names = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
            node.func, "id", "")
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        if func.startswith("DEFINE"):
            names.add(first.value)
        elif func == "add_argument" and first.value.startswith("--"):
            names.add(first.value[2:].replace("-", "_"))
            names.add(first.value[2:])
    for target in re.findall(r"[\"']((?:benchmarks|figures|build)/\w+\.py)[\"']", source):
        names |= _tool_flag_names(f"tools/{target}")
    for name in re.findall(r"^from magenta_style import (\w+)", source, re.M):
        module = importlib.import_module(f"magenta_style.{name}")
        if callable(getattr(module, "_define_flags", None)):  # An alias of a package command.
            names |= set(cli.new_flag_values(module._define_flags))
    return names


def test_the_docs_show_commands_and_python_blocks():
    commands = _shell_commands()
    modules = {c[2] for c in commands}
    assert {"magenta_style.train", "magenta_style.stylize", "magenta_style.export",
            "magenta_style.optimize"} <= modules
    assert any(c[2].startswith("tools/") for c in commands)
    assert len(_python_blocks()) >= 5


@pytest.mark.parametrize("relpath, line, command, argv",
                         [pytest.param(*c, id=f"{c[0]}:{c[1]}:{c[2]}") for c in _shell_commands()])
def test_shell_command_parses(relpath, line, command, argv, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # --flagfile=configs/... is relative to the repository.
    where = f"{relpath} line {line}: {command} {' '.join(argv)}"
    if command.startswith("tools/"):
        assert (REPO_ROOT / command).is_file(), f"{where}: no such tool"
        known = _tool_flag_names(command)
        for arg in argv:
            if arg.startswith("--"):
                name = arg[2:].split("=")[0]
                name = name[2:] if name.startswith("no") and name[2:] in known else name
                assert name in known, f"{where}: {command} has no flag --{name}"
        return
    fv = _command_flag_values(command)
    try:
        fv([command, *argv])
    except flags.Error as e:
        pytest.fail(f"{where}: {e}")


def _draw(path, size=(24, 32), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def _draw_map(path, size=(24, 32)):
    pixels = np.zeros((*size, 3), np.uint8)
    pixels[:, : size[1] // 2] = (255, 0, 0)
    pixels[:, size[1] // 2:] = (0, 0, 255)
    Image.fromarray(pixels).save(path)


def _prepare(text, marker, directory, namespace):
    """Applies a block's docs-test marker in `directory`; returns the text to run."""
    for i, name in enumerate(marker.get("images", [])):
        _draw(directory / name, seed=i)
    for name in marker.get("maps", []):
        _draw_map(directory / name)
    for old, new in marker.get("replace", {}).items():
        assert old in text, f"the marker replaces {old!r}, which the block does not contain"
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("relpath, line, text, marker",
                         [p for p in _python_blocks() if "setup" not in p.values[3]])
def test_python_block_runs(relpath, line, text, marker, tmp_path, monkeypatch):
    code = compile(text, f"{relpath}:{line}", "exec")
    if "skip" in marker:
        pytest.skip(f"{relpath}:{line} cannot run here: {marker['skip']}")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "docs_block"}
    code = compile(_prepare(text, marker, tmp_path, namespace), f"{relpath}:{line}", "exec")
    exec(code, namespace)  # pylint: disable=exec-used


@pytest.fixture(scope="module")
def blocks_export(tmp_path_factory, export_tiny_model):
    """A directory holding a tiny 3-style export at exports/magenta_style/1, shared by the
    blocks that need one (they only read it)."""
    directory = tmp_path_factory.mktemp("docs_export")
    version_dir = pathlib.Path(export_tiny_model(directory / "staging", 3, 0))
    target = directory / "exports" / "magenta_style" / "1"
    target.parent.mkdir(parents=True)
    shutil.move(str(version_dir), str(target))
    return directory


@pytest.mark.slow
@pytest.mark.parametrize("relpath, line, text, marker",
                         [p for p in _python_blocks() if "setup" in p.values[3]])
def test_python_block_with_an_export_runs(relpath, line, text, marker, tmp_path, monkeypatch,
                                          blocks_export, load_script):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").symlink_to(blocks_export / "exports")
    rng = np.random.default_rng(0)
    namespace = {"__name__": "docs_block",
                 "images": rng.random((1, 24, 32, 3), dtype=np.float32),
                 "style_weights": np.array([[0.0, 1.0, 0.0]], np.float32)}
    if marker["setup"] == "tflite":
        tool = load_script(REPO_ROOT / "tools" / "export_tflite.py")
        (tmp_path / "style.tflite").write_bytes(
            tool.convert("exports/magenta_style/1", input_size=(24, 32)))
        namespace.update(image=namespace["images"], weights=namespace["style_weights"])
    else:
        assert marker["setup"] == "export", marker
    code = compile(_prepare(text, marker, tmp_path, namespace), f"{relpath}:{line}", "exec")
    exec(code, namespace)  # pylint: disable=exec-used


def test_the_parser_finds_a_bad_flag(tmp_path):
    fv = _command_flag_values("magenta_style.export")
    with pytest.raises(flags.Error):
        fv(["export", "--checkpoint=x", "--export_dir=y", "--no_such_flag=1"])
