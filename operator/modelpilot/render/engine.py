"""Jinja2 templates that lay out a YAML structure; every value is carried beside it.

Templates lay out structure; values never get spliced in as text. The JSON filter puts
a placeholder where a value goes and keeps the value as JSON; the text, structure only,
is parsed with a safe YAML loader once per shape (the same for every model with the
same branches), and each placeholder is replaced by its value. So a value that contains
quotes, colons or newlines cannot change the document's shape, and a new model's render
parses no YAML: PyYAML builds every mapping in Python (0.5 ms per object, most of a new
model's render).
"""

from __future__ import annotations

import json
import threading
from functools import cache, lru_cache
from typing import Any

import jinja2
import yaml

# libyaml's loader when PyYAML was built with it: the pure-Python one made parsing most
# of a reconcile's CPU time (bench: render_model 21 ms). Both refuse non-safe tags.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What stands for the n-th value in the text; no template's own text looks like it.
_PLACEHOLDER = "<modelpilot value {}>"
# The values of the render in progress on this thread (reconciles render on several).
_rendering = threading.local()


class RenderError(ValueError):
    """A template produced something that is not one well-formed Kubernetes object."""


def _to_json(value: Any) -> str:
    encoded = json.dumps(value, ensure_ascii=False)
    values: list[str] | None = getattr(_rendering, "values", None)
    if values is None:  # rendered outside render_fragment: the value itself
        return encoded
    values.append(encoded)
    return f'"{_PLACEHOLDER.format(len(values) - 1)}"'  # nothing in it needs escaping


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelpilot.render", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship inside the package: no stat() of each file on every render.
        auto_reload=False,
    )
    env.filters["json"] = _to_json
    return env


def render_fragment(template: str, /, **context: Any) -> dict[str, Any]:
    """Render one template into one mapping (a part of an object), nulls dropped."""
    compiled = _environment().get_template(template)
    values: list[str] = []
    outer, _rendering.values = getattr(_rendering, "values", None), values
    try:
        text = compiled.render(**context)
    finally:
        _rendering.values = outer
    obj: dict[str, Any] = json.loads(_filled_json(template, text, tuple(values)))
    return obj


@lru_cache(maxsize=4096)
def _filled_json(template: str, text: str, values: tuple[str, ...]) -> str:
    """The object as JSON, kept per shape and values: a model's reconciles render the
    same children again and again, and json.loads is C."""
    placeholders = {_PLACEHOLDER.format(i): value for i, value in enumerate(values)}
    filled: dict[str, Any] = _filled(_structure(template, text), placeholders)
    _drop_nulls(filled)
    return json.dumps(filled)


@lru_cache(maxsize=256)
def _structure(template: str, text: str) -> dict[str, Any]:
    """The parsed text of one shape (never changed: _filled copies it)."""
    try:
        obj = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as err:
        raise RenderError(f"{template} produced invalid YAML: {err}") from err
    if not isinstance(obj, dict):
        raise RenderError(f"{template} produced {type(obj).__name__}, not a mapping")
    return obj


def _filled(node: Any, placeholders: dict[str, str]) -> Any:
    """A copy of node with each placeholder replaced by its value (given as JSON)."""
    if isinstance(node, dict):
        return {key: _filled(value, placeholders) for key, value in node.items()}
    if isinstance(node, list):
        return [_filled(item, placeholders) for item in node]
    if isinstance(node, str) and node in placeholders:
        return json.loads(placeholders[node])
    return node


def render_template(template: str, /, **context: Any) -> dict[str, Any]:
    """Render one template into one checked Kubernetes object."""
    obj = render_fragment(template, **context)
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str):
            raise RenderError(f"{template} produced an object without {key}")
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise RenderError(f"{template} produced an object without metadata.name")
    return obj


def _drop_nulls(node: Any) -> None:
    # Optional fields render as null when unset; the API should see them absent.
    if isinstance(node, dict):
        for key in [k for k, v in node.items() if v is None]:
            del node[key]
        for value in node.values():
            _drop_nulls(value)
    elif isinstance(node, list):
        for item in node:
            _drop_nulls(item)
