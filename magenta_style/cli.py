"""Plumbing shared by the command-line entry points (train, evaluate, export, stylize, ...).

Part of the command-line layer, like the entry points themselves: it is the only
other module that touches absl flags. A user mistake becomes one line on stderr,
`<program>: error: <what is wrong>`, and exit status 2, never a traceback.
"""
import dataclasses
import os
import sys

from absl import app
from absl import flags


class UsageError(ValueError):
    """A mistake in the command line or its inputs: one line on stderr, exit status 2."""


def print_error(program, message):
    """Prints `program: error: message`, folded to one line, on stderr."""
    print(f"{program}: error: {' '.join(str(message).split())}", file=sys.stderr)


def fail(program, message, code=2):
    """print_error, then exit with `code`."""
    print_error(program, message)
    sys.exit(code)


def parse_flag_values(flag_values, argv, required=()):
    """Parses argv (argv[0] is the program name) into a private absl FlagValues.

    Raises:
      UsageError: unknown or malformed flags, positional arguments, or a flag named in
        `required` left empty.
    """
    try:
        rest = flag_values(list(argv))
    except flags.Error as e:
        raise UsageError(str(e).replace("\n", " ")) from None
    if len(rest) > 1:
        raise UsageError(f"unexpected argument(s) {rest[1:]}; every setting is a --flag")
    for name in required:
        if not flag_values[name].value:
            raise UsageError(f"--{name} is required")
    return flag_values


_DEFINE_BY_TYPE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
                   float: flags.DEFINE_float, str: flags.DEFINE_string}


def define_field_flags(flag_values, config_class, helps, choices=None):
    """Defines one flag per field of a config dataclass, with the field's default.

    The flag is named as the field and typed by its annotation (bool, int, float, str),
    so a default is written once, in config.py.

    Args:
      flag_values: the absl FlagValues to define them in.
      config_class: a dataclass of config.py.
      helps: {field name: help text}, the fields to define.
      choices: {field name: allowed values}: those become enum flags.
    """
    choices = choices or {}
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    for name, text in helps.items():
        default = fields[name].default
        if name in choices:
            flags.DEFINE_enum(name, default, list(choices[name]), text, flag_values=flag_values)
        else:
            _DEFINE_BY_TYPE[fields[name].type](name, default, text, flag_values=flag_values)


_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?", "h")


def _asks_for_help(argv):
    """True when argv (argv[0] is the program) holds one of absl's help flags."""
    for arg in argv[1:]:
        if arg == "--":
            return False
        if arg.startswith("-") and arg.lstrip("-").split("=", 1)[0] in _HELP_FLAGS:
            return True
    return False


def quiet_tf_logging():
    """Turns TensorFlow's C++ logging down unless the user set TF_CPP_MIN_LOG_LEVEL.

    Level 2 (warnings off) everywhere; 3 (errors off too) on a machine without an
    NVIDIA driver, where the only C++ error every command printed was "failed call to
    cuInit" (real failures still reach Python as exceptions). Must run before
    TensorFlow logs its first line: the level is read once.
    """
    has_driver = os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidia0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if has_driver else "3")


def run_with_global_flags(main, program):
    """absl.app.run for commands whose flags are module-level absl flags.

    Flag errors (unknown flag, bad value, missing required flag) are one-line usage
    errors. `--help` exits 0 (absl exits 1 after printing the help, which reads as a
    failure to scripts). TensorFlow's C++ INFO logging is turned down unless the user
    set it.
    """
    quiet_tf_logging()

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(program, e)
        except SystemExit as e:
            if e.code == 1 and _asks_for_help(argv):
                sys.exit(0)
            raise

    app.run(main, flags_parser=parse)


# What the private-flag commands take as a request for their usage text.
HELP_ARGS = ("-h", "-help", "--help", "-?", "--helpshort", "--helpfull")


def run_command(argv, program, parse_args, run, usage, interrupted=None):
    """The `main(argv)` of a command with private flags, from its parts.

    Args:
      argv: list of str (argv[0] is the program name).
      program: name printed before error lines.
      parse_args: argv -> a validated args value; raises UsageError.
      run: args -> int exit status; may raise UsageError.
      usage: () -> str, printed on stdout for a HELP_ARGS flag (exit status 0).
      interrupted: line printed on Ctrl-C (exit status 130), or None to let
        KeyboardInterrupt through.

    Returns:
      int exit status; a UsageError prints one line on stderr and gives 2.
    """
    if any(arg in HELP_ARGS for arg in argv[1:]):
        sys.stdout.write(usage())
        return 0
    try:
        return run(parse_args(argv))
    except UsageError as e:
        print_error(program, e)
        return 2
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        sys.stderr.write(f"\n{program}: {interrupted}\n")
        return 130


def run_with_private_flags(main):
    """absl.app.run for commands that parse argv themselves into a private FlagValues.

    absl.app.run insists on parsed global flags; hand it none and pass the whole
    argv through to `main`.
    """
    def keep_argv(argv):
        flags.FLAGS(argv[:1])
        return argv

    app.run(main, flags_parser=keep_argv)
