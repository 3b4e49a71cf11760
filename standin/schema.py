"""A small valid instance of a JSON schema, so structured-output answers are schema-valid.

Covers what structured-output clients send (pydantic / zod generated schemas): objects with
``properties`` and ``required``, arrays, the scalar types, ``enum``, ``const``, ``anyOf`` /
``oneOf`` / ``allOf`` (first branch), ``$ref`` into ``$defs`` / ``definitions``, ``minItems``,
``minLength`` and numeric minimums. Every property is filled, not only the required ones.
"""

from __future__ import annotations

from typing import Any

JSONDict = dict[str, Any]
MAX_DEPTH = 16


def instance(schema: Any) -> Any:
    """A value that validates against ``schema`` (``{}`` for an open or unknown schema)."""
    if not isinstance(schema, dict):
        return {}
    return _value(schema, schema, 0)


def _value(schema: JSONDict, root: JSONDict, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _value(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches and isinstance(branches[0], dict):
            return _value(branches[0], root, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _typed(kind, schema, root, depth)


def _typed(kind: Any, schema: JSONDict, root: JSONDict, depth: int) -> Any:
    if kind == "object" or kind is None:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: _value(sub if isinstance(sub, dict) else {}, root, depth + 1)
                for name, sub in properties.items()}
    if kind == "array":
        raw = schema.get("items")
        items: JSONDict = raw if isinstance(raw, dict) else {}
        count = max(1, int(schema.get("minItems") or 0))
        return [_value(items, root, depth + 1) for _ in range(count)]
    if kind == "string":
        return "x" * max(1, int(schema.get("minLength") or 0))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = int(low) + 1 if isinstance(low, int | float) else 1
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    return None


def _resolve(ref: Any, root: JSONDict) -> JSONDict:
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}
