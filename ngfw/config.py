"""Settings files (`/etc/ngfw/dataplane.yaml`, `/etc/ngfw/control.yaml`): a YAML mapping whose keys are
the command's own long options, turned into command-line words so that one parser checks both.

```yaml
wire: [ens4:ens5]                  # a repeatable option takes a list (`wires:` is accepted too)
policy: /etc/ngfw/policy.yaml
rules: {et: /etc/ngfw/rules/et-open}   # NAME=VALUE options take a mapping
var: {HOME_NET: "[10.0.0.0/8]"}
tx-thread: false                   # on/off options take true/false
```

Options given on the command line come after the file's, so a single-valued one given on both wins
from the command line, and a repeatable one adds to the file's list. Every problem names the file and
the setting.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn


class ConfigError(Exception):
    """A settings file that cannot be used; the message names the file and the setting."""


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of `ngfw NAME`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            subparser: argparse.ArgumentParser = action.choices[name]
            return subparser
    raise KeyError(name)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Long option name (without `--`) -> its action, for the options a file may set."""
    out = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and not option.startswith("--no-") and action.dest not in ("help", "config"):
                out[option[2:]] = action
    return out


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where}: expected a single value (text or number), got {value!r}")
    return str(value)


def _item_words(option: str, action: argparse.Action, value: Any, where: str) -> list[str]:
    """One repeatable option's value: a list, a mapping (NAME=VALUE options) or a single value."""
    metavar = str(action.metavar or "")
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if isinstance(item, list):
                # NAME:PORT,PORT (segments), or a rule variable's [a,b] list
                joined = ",".join(_scalar(x, f"{where}.{key}") for x in item)
                items.append(f"{key}:{joined}" if metavar.startswith("NAME:") else f"{key}=[{joined}]")
            else:
                items.append(f"{key}={_scalar(item, f'{where}.{key}')}")
    elif isinstance(value, list):
        items = [_scalar(item, f"{where}[{i}]") for i, item in enumerate(value)]
    else:
        items = [_scalar(value, where)]
    return [word for item in items for word in (option, item)]


def _words(name: str, action: argparse.Action, value: Any, where: str) -> list[str]:
    option = f"--{name}"
    if isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return [option] if value else [f"--no-{name}"]
    if action.nargs == 0:  # store_true and the like
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return [option] if value else []
    if isinstance(action, argparse._AppendAction):
        return _item_words(option, action, value, where)
    if value is None:
        return []
    if value is False and str(action.metavar or "").endswith("|off"):
        return [option, "off"]  # YAML reads a bare `off` as false
    return [option, _scalar(value, where)]


def _raise_instead(path: str, name: str) -> Callable[[str], NoReturn]:
    def error(message: str) -> NoReturn:
        # argparse says "argument --wire: expected IF_A:IF_B ..."; the file and key say it better
        message = message.split(": ", 1)[1] if message.startswith("argument ") and ": " in message else message
        raise ConfigError(f"{path}: {name}: {message}")

    return error


def config_argv(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """The settings of `path` as command-line words of `parser` (checked by it); ConfigError otherwise."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such settings file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings (option: value), got {type(data).__name__}")
    options = _options(parser)
    argv: list[str] = []
    for key, value in data.items():
        name = str(key).replace("_", "-")
        action = options.get(name)
        if action is None and name.endswith("s") and isinstance(options.get(name[:-1]), argparse._AppendAction):
            name = name[:-1]  # `wires:` for `--wire`
            action = options[name]
        if action is None:
            known = ", ".join(sorted(options))
            raise ConfigError(f"{path}: unknown setting {key!r} (the settings are this command's options: {known})")
        words = _words(name, action, value, f"{path}: {key}")
        original_error = parser.error
        parser.error = _raise_instead(path, str(key))  # type: ignore[method-assign,assignment]
        try:
            parser.parse_args(words)
        finally:
            parser.error = original_error  # type: ignore[method-assign]
        argv += words
    return argv


def with_config(words: list[str], command: str, parser: argparse.ArgumentParser, path: str) -> list[str]:
    """`words` (the whole command line) with the file's settings inserted right after `command`."""
    at = words.index(command) + 1
    return [*words[:at], *config_argv(path, subcommand_parser(parser, command)), *words[at:]]
