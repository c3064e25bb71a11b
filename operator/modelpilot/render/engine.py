"""Jinja2 templates that emit YAML, every value through a JSON filter, parsed back.

Templates lay out structure; values never get spliced in as raw text. JSON is valid
YAML, so a value that contains quotes, colons or newlines cannot change the document's
shape. The result is parsed with a safe YAML loader and checked, never concatenated.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from typing import Any

import jinja2
import yaml

# libyaml's loader when PyYAML was built with it: the pure-Python one made parsing most
# of a reconcile's CPU time (bench: render_model 21 ms). Both refuse non-safe tags.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RenderError(ValueError):
    """A template produced something that is not one well-formed Kubernetes object."""


def _to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


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
    text = _environment().get_template(template).render(**context)
    parsed = _parse(template, text)
    return json.loads(parsed) if isinstance(parsed, str) else _load(template, text)


@lru_cache(maxsize=4096)
def _parse(template: str, text: str) -> str | None:
    """The parsed mapping as JSON, kept per rendered text: a model's reconciles render
    the same text again and again, and PyYAML builds every mapping in Python (even with
    libyaml's parser) while json.loads is C. None where JSON cannot carry the mapping
    as YAML parsed it (then it is parsed each time)."""
    obj = _load(template, text)
    encoded = json.dumps(obj)
    return encoded if json.loads(encoded) == obj else None


def _load(template: str, text: str) -> dict[str, Any]:
    try:
        obj = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as err:
        raise RenderError(f"{template} produced invalid YAML: {err}") from err
    if not isinstance(obj, dict):
        raise RenderError(f"{template} produced {type(obj).__name__}, not a mapping")
    _drop_nulls(obj)
    return obj


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
