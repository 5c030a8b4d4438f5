"""Load YAML/TOML configs into pydantic models with errors a person can act on.

Every error names the file, the line, the dotted key, what was expected and (for unknown keys) the
closest valid key. All errors are reported at once, never one per run.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hyft.errors import ConfigError as ConfigError  # defined in the base layer (hyft.errors); re-exported

ModelT = TypeVar("ModelT", bound=BaseModel)


def _yaml_line_map(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a YAML document to its 1-based line number."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = str(key_node.value)
                lines[path + (key,)] = key_node.start_mark.line + 1
                walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[path + (str(index),)] = item.start_mark.line + 1
                walk(item, path + (str(index),))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(pydantic model inside ``annotation``, whether a dict/list index comes before its keys)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for arg in getattr(annotation, "__args__", ()):
        found, _ = _model_in(arg)
        if found is not None:
            origin = getattr(annotation, "__origin__", None)
            return found, origin in (dict, list)
    return None, False


def _model_at(model: type[BaseModel], path: tuple[str, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the last key of ``path`` (for did-you-mean)."""
    current: type[BaseModel] | None = model
    keys = list(path)
    while keys and current is not None:
        field = current.model_fields.get(keys.pop(0))
        if field is None:
            return None
        current, indexed = _model_in(field.annotation)
        if indexed and keys:
            keys.pop(0)  # the dict key or list index
    return current


def format_validation_error(
    error: ValidationError,
    model: type[BaseModel],
    source: str,
    line_map: dict[tuple[str, ...], int] | None = None,
) -> list[str]:
    """Turn a pydantic ValidationError into one line per problem: ``file:line: key: message``."""
    problems = []
    line_map = line_map or {}
    for item in error.errors():
        path = tuple(str(p) for p in item["loc"])
        # Find the deepest path prefix that has a line number.
        line = None
        for cut in range(len(path), 0, -1):
            if path[:cut] in line_map:
                line = line_map[path[:cut]]
                break
        # An override from the command line is named as such, never blamed on a line of the file.
        where = line if isinstance(line, str) else f"{source}:{line}" if line else source
        key = ".".join(path) or "<root>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            owner = _model_at(model, path[:-1])
            valid = sorted(owner.model_fields) if owner else []
            close = difflib.get_close_matches(path[-1], valid, n=1, cutoff=0.5)
            message = f"unknown key '{path[-1]}'"
            message += f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and item["type"] not in ("value_error", "assertion_error"):
            message += f" (got {item['input']!r})"
        problems.append(f"{where}: {key}: {message}")
    return problems


def read_config_file(path: str | Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse a YAML or TOML file into a dict plus a key-path → line map (empty for TOML)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), [f"{path}: file not found"])
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text), {}
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), [f"{path}: not valid TOML: {exc}"]) from None
    try:
        data = yaml.safe_load(text) or {}
        line_map = _yaml_line_map(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(str(path), [f"{where}: not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"{path}:1: expected a mapping of keys at the top level"])
    return data, line_map


def _override_error(override: str, problem: str) -> ConfigError:
    return ConfigError("<command line>", [f"command-line override '{override}': {problem}"])


def apply_overrides(
    data: dict[str, Any], overrides: list[str], line_map: dict[tuple[str, ...], Any] | None = None
) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML scalars) to a config dict.

    A numeric key indexes a list (``models.0.name_or_path=...``). With ``line_map``, the overridden
    key paths (and everything below them) are re-pointed at the override, so a validation error in
    an overridden value names the override instead of the line of the file it replaced.
    """
    for override in overrides:
        if "=" not in override:
            raise _override_error(override, "must look like key.sub=value")
        dotted, raw = override.split("=", 1)
        keys = dotted.strip().split(".")
        if not all(keys):
            raise _override_error(override, f"'{dotted}' has an empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise _override_error(
                override, f"value is not valid YAML ({getattr(exc, 'problem', None) or exc})"
            ) from None
        target: Any = data
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            if isinstance(target, list) and key.isdigit() and int(key) < len(target):
                if last:
                    target[int(key)] = value
                else:
                    target = target[int(key)]
            elif isinstance(target, dict):
                if last:
                    target[key] = value
                else:
                    target = target.setdefault(key, {})
            else:
                where = ".".join(keys[:depth]) or "<root>"
                kind = (
                    f"a list of {len(target)}" if isinstance(target, list) else f"a {type(target).__name__}"
                )
                raise _override_error(override, f"'{where}' is {kind}, so '{key}' cannot be set in it")
        if line_map is not None:
            path = tuple(keys)
            for known in [k for k in line_map if k[: len(path)] == path]:
                del line_map[known]
            line_map[path] = f"command-line override '{override}'"
    return data


def load_config(path: str | Path, model: type[ModelT], overrides: list[str] | None = None) -> ModelT:
    """Read ``path`` and validate it as ``model``; raise ConfigError listing every problem."""
    data, line_map = read_config_file(path)
    data = apply_overrides(data, overrides or [], line_map)
    return validate_config(data, model, str(path), line_map)


def validate_config(
    data: dict[str, Any],
    model: type[ModelT],
    source: str = "<config>",
    line_map: dict[tuple[str, ...], int] | None = None,
) -> ModelT:
    """Validate an already-parsed dict; raise ConfigError listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc, model, source, line_map)) from None
