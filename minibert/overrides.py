"""The command line: `--key=value` overrides checked against a script's defaults, and how
a command reports a mistake.

nanoGPT's configurator, made strict: an unknown key is an error (a typo must not silently
train with the default), and a value must parse as the default's type.

    >>> parse_overrides({"lr": 1e-3, "steps": 10, "name": "run"}, ["--lr=3e-4", "--steps=20"])
    {'lr': 0.0003, 'steps': 20, 'name': 'run'}
"""

import os
import sys


def parse_value(key, text, default):
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--{key} expects true or false, got {text!r}")
    if default is None:  # optional settings: a string, or none
        return None if text.lower() in ("none", "") else text
    try:
        return type(default)(text)
    except ValueError:
        raise ValueError(f"--{key} expects a {type(default).__name__} (default {default!r}), got {text!r}") from None


def parse_overrides(defaults, argv):
    settings = dict(defaults)
    for argument in argv:
        if argument in ("-h", "--help"):
            width = max(len(k) for k in defaults)
            print("settings (override with --key=value):")
            for key, value in defaults.items():
                print(f"  --{key:{width}s} = {value!r}")
            raise SystemExit(0)
        if not argument.startswith("--") or "=" not in argument:
            raise ValueError(f"arguments look like --key=value, got {argument!r}")
        key, text = argument[2:].split("=", 1)
        if key not in defaults:
            close = [k for k in defaults if k.startswith(key[:3])]
            raise ValueError(f"unknown setting --{key}" + (f"; did you mean {', '.join('--' + k for k in close)}?" if close else ""))
        settings[key] = parse_value(key, text, defaults[key])
    return settings


def run_from_command_line(main):
    """Every command's entry point (`if __name__ == "__main__"`). minibert says what is wrong
    with a setting or a file in a ValueError or an OSError whose message names the setting, or
    the file and line; from a shell that message is the whole answer: one line on stderr and
    exit status 2, not a traceback through the library. MINIBERT_TRACEBACK=1 shows the
    traceback (to report a bug). Ctrl-C ends with status 130, after the training loops have
    written their checkpoint and said so."""
    try:
        main()
    except (ValueError, OSError) as error:
        if os.environ.get("MINIBERT_TRACEBACK", "0") not in ("", "0"):
            raise
        print(f"{os.path.basename(sys.argv[0])}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
