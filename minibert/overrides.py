"""`--key=value` command-line overrides, checked against a script's defaults.

nanoGPT's configurator, made strict: an unknown key is an error (a typo must not silently
train with the default), and a value must parse as the default's type.

    >>> parse_overrides({"lr": 1e-3, "steps": 10, "name": "run"}, ["--lr=3e-4", "--steps=20"])
    {'lr': 0.0003, 'steps': 20, 'name': 'run'}
"""


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
