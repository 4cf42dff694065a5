"""Validators for named schemas of the vendored OpenAI and Azure OpenAI specs.

The specs are kept in the repository, trimmed to the schemas the tests use (``specs/``,
see ``specs/SOURCE.md`` for their origin and licence), so every contract test runs in a
fresh clone. Each spec is parsed once per session and normalised into JSON Schema 2020-12:

- OpenAPI 3.0's ``nullable: true`` (which the 3.1 OpenAI spec still uses) becomes
  ``anyOf [schema, null]``; plain JSON Schema validators would ignore it and reject the
  ``null`` values the API accepts.
- local ``$ref`` s become absolute URIs into a ``referencing`` registry, so any subschema
  validates on its own (:func:`undeclared_keys` validates ``oneOf`` branches one by one).
- documentation keys are dropped, only in schema positions (a property may be called
  ``description``).

Validation alone is not strict enough for requests: the specs leave objects open, so a
typo'd field would pass. :func:`undeclared_keys` walks an instance with its schema and
names every key no matching (sub)schema declares.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPECS = Path(__file__).resolve().parent / "specs"

_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_ONE = frozenset(
    {"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames"}
)
_DOC_KEYS = frozenset({"description", "example", "examples", "title", "x-oaiMeta"})
_COMPOSITION = ("allOf", "anyOf", "oneOf")


@dataclass(frozen=True)
class Spec:
    name: str
    path: Path
    uri: str
    errata: Callable[[dict[str, Any]], None] | None = None


def _azure_errata(schemas: dict[str, Any]) -> None:
    # 2024-10-21 requires ``json_schema.type`` in ResponseFormatJsonSchema but never declares
    # it: the published property list (and the service, and openai-python) has no such
    # field. Asserted first so a corrected spec makes this erratum fail loudly, not linger.
    inner = schemas["ResponseFormatJsonSchema"]["properties"]["json_schema"]
    assert inner["required"] == ["type", "name"], inner["required"]
    assert "type" not in inner["properties"]
    inner["required"] = ["name"]


OPENAI = Spec("openai", SPECS / "openai.yaml", "urn:spec:openai")
AZURE = Spec(
    "azure",
    SPECS / "azure-2024-10-21.yaml",
    "urn:spec:azure-2024-10-21",
    _azure_errata,
)


def _normalise(schema: Any, uri: str) -> Any:
    if not isinstance(schema, dict):
        return schema  # boolean schemas
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS:
            out[key] = {name: _normalise(sub, uri) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS:
            out[key] = [_normalise(sub, uri) for sub in value]
        elif key in _SCHEMA_ONE:
            out[key] = _normalise(value, uri)
        elif key == "$ref":
            out[key] = uri + value if value.startswith("#") else value
        elif key == "nullable" or key in _DOC_KEYS:
            continue
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
            continue  # draft-4 boolean form, rewritten below
        else:
            out[key] = value
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if schema.get(flag) is True and bound in out:
            out[flag] = out.pop(bound)
    if schema.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _load(spec: Spec) -> tuple[Registry[Any], dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with spec.path.open(encoding="utf-8") as f:
        document = yaml.load(f, Loader=loader)
    raw = document["components"]["schemas"]
    schemas = {name: _normalise(schema, spec.uri) for name, schema in raw.items()}
    if spec.errata is not None:
        spec.errata(schemas)
    contents = {"components": {"schemas": schemas}}
    resource = DRAFT202012.create_resource(contents)
    return Registry().with_resource(spec.uri, resource), schemas


def require(spec: Spec) -> None:
    """Fail (never skip) when a spec kept in the repository is missing."""
    assert spec.path.is_file(), f"{spec.name} spec missing at {spec.path} (see specs/SOURCE.md)"


@dataclass(frozen=True)
class SchemaCheck:
    """A named schema of one spec: validation plus the undeclared-key check."""

    spec: Spec
    name: str
    registry: Registry[Any]

    @property
    def schema(self) -> dict[str, Any]:
        return {"$ref": f"{self.spec.uri}#/components/schemas/{self.name}"}

    def errors(self, instance: object) -> list[str]:
        validator = Draft202012Validator(self.schema, registry=self.registry)
        return [
            f"{e.json_path}: {e.message[:300]}"
            for e in sorted(validator.iter_errors(instance), key=lambda e: e.json_path)
        ]

    def undeclared(self, instance: object) -> list[str]:
        return undeclared_keys(instance, self.schema, self.registry)

    def assert_valid(self, instance: object, *, strict: bool = True) -> None:
        """Assert ``instance`` validates; with ``strict`` also that every key is declared."""
        errors = self.errors(instance)
        assert not errors, f"{self.spec.name} {self.name}:\n" + "\n".join(errors)
        if strict:
            extra = self.undeclared(instance)
            assert not extra, f"{self.spec.name} {self.name} does not declare: {extra}"


def spec_validator(spec: Spec, name: str) -> SchemaCheck:
    require(spec)
    registry, schemas = _load(spec)
    assert name in schemas, f"{spec.name} spec has no schema {name!r}"
    return SchemaCheck(spec, name, registry)


def spec_schema(spec: Spec, name: str) -> dict[str, Any]:
    """The normalised schema itself, for tests that look at what a spec declares."""
    require(spec)
    return _load(spec)[1][name]  # type: ignore[no-any-return]


# --- undeclared keys --------------------------------------------------------------------


def _is_valid(instance: object, schema: Any, registry: Registry[Any]) -> bool:
    return bool(Draft202012Validator(schema, registry=registry).is_valid(instance))


def _alternatives(
    schema: Any, instance: object, registry: Registry[Any]
) -> list[list[dict[str, Any]]]:
    """The ways ``instance`` can satisfy ``schema``, each a list of plain (composition-free)
    schema nodes that all apply: ``allOf``/``$ref`` conjoin, ``oneOf``/``anyOf`` branch
    (keeping only branches ``instance`` validates against)."""
    if not isinstance(schema, dict):
        return [[]]
    factors: list[list[list[dict[str, Any]]]] = [
        [[{k: v for k, v in schema.items() if k != "$ref" and k not in _COMPOSITION}]]
    ]
    if "$ref" in schema:
        target = registry.resolver().lookup(schema["$ref"]).contents
        factors.append(_alternatives(target, instance, registry))
    for sub in schema.get("allOf", ()):
        factors.append(_alternatives(sub, instance, registry))
    for keyword in ("oneOf", "anyOf"):
        if keyword in schema:
            options = [
                alt
                for sub in schema[keyword]
                if _is_valid(instance, sub, registry)
                for alt in _alternatives(sub, instance, registry)
            ]
            # No valid branch is a validation error, reported by validation itself.
            factors.append(options or [[]])
    return [[node for part in combo for node in part] for combo in itertools.product(*factors)]


def _problems_in(
    instance: object, nodes: list[dict[str, Any]], registry: Registry[Any], path: str
) -> Iterator[str]:
    if isinstance(instance, dict):
        declared: dict[str, list[Any]] = {}
        open_to: list[Any] = []
        closed = False
        for node in nodes:
            for name, sub in node.get("properties", {}).items():
                declared.setdefault(name, []).append(sub)
            closed = closed or "properties" in node
            extra = node.get("additionalProperties")
            if extra is not None and extra is not False:
                open_to.append(extra)
        for key, value in instance.items():
            subs = declared.get(key)
            if subs is None:
                if not open_to and closed:
                    yield f"{path}.{key}"
                    continue
                # A map (additionalProperties schema) or a free-form object.
                subs = [s for s in open_to if isinstance(s, dict)]
            for sub in subs:
                yield from undeclared_keys(value, sub, registry, f"{path}.{key}")
    elif isinstance(instance, list):
        items = [node["items"] for node in nodes if isinstance(node.get("items"), dict)]
        for i, element in enumerate(instance):
            for sub in items:
                yield from undeclared_keys(element, sub, registry, f"{path}[{i}]")


def undeclared_keys(
    instance: object, schema: Any, registry: Registry[Any], path: str = "$"
) -> list[str]:
    """Paths of keys in ``instance`` that no applicable schema node declares.

    An object node with ``properties`` and no ``additionalProperties`` counts as closed;
    one with neither is free-form (a JSON Schema a user supplies, say). Among ``oneOf`` /
    ``anyOf`` branches the instance matches, the one with the fewest problems is reported.
    """
    if not isinstance(instance, dict | list):
        return []
    best: list[str] | None = None
    for nodes in _alternatives(schema, instance, registry):
        problems = list(_problems_in(instance, nodes, registry, path))
        if not problems:
            return []
        if best is None or len(problems) < len(best):
            best = problems
    return best or []
