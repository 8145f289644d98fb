"""The Google provider's schema, read offline from its prebuilt CDKTF bindings, and a checker of terraform/*.tf.

`cdktf-cdktf-provider-google` (scripts/bootstrap.sh downloads the wheel into .tools/cdktf-google) holds one
generated module per resource (`cdktf_cdktf_provider_google/<type minus google_>/__init__.py`) and per data
source (`.../data_google_<...>/__init__.py`). In each, the class that extends TerraformResource (or
TerraformDataSource) takes the resource's arguments and blocks as keyword arguments: required ones have no
default. Nested blocks are config-struct classes of the same module (`<Resource><Block>`), referenced by the
argument's type annotation and documented as "<name> block.". The Terraform name of each argument is the
anchor of its registry link in the docstring (the Python name may differ: `detect_md5_hash` is
`detect_md5hash`). The modules are read with `ast`, straight out of the wheel, only those the configuration
uses; jsii is never imported. The `provider "google"` block is checked the same way (`provider/__init__.py`).
"""

from __future__ import annotations

import ast
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2

PACKAGE = "cdktf_cdktf_provider_google"
# Keyword arguments of every resource / data source class that are Terraform meta-arguments, not schema.
CDKTF_META = frozenset({"connection", "count", "depends_on", "for_each", "lifecycle", "provider", "provisioners"})
LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/hashicorp/google/(?P<version>[\d.]+)/docs"
    r"(?:/(?P<kind>resources|data-sources)/(?P<doc>\w+))?(?:#(?P<anchor>[\w-]+))? (?P<target>[\w#-]+)\}")
PARAM = re.compile(r":param (\w+):(.*?)(?=\n\s*:param |\Z)", re.S)
BASES = {"resource": "TerraformResource", "data": "TerraformDataSource", "provider": "TerraformProvider"}

# What Terraform itself allows in a resource / data block besides the provider's schema.
META_ATTRIBUTES = frozenset({"count", "for_each", "depends_on", "provider"})
LIFECYCLE = {
    "resource": ({"create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by"},
                 {"precondition", "postcondition"}),
    "data": (set(), {"precondition", "postcondition"}),
}
META_BLOCKS = {"resource": {"lifecycle", "provisioner", "connection"}, "data": {"lifecycle"}}


@dataclass
class Field:
    name: str
    required: bool
    block: BlockSchema | None = None  # set for nested blocks
    multiple: bool = False  # a block that may repeat (list or set); otherwise at most one


@dataclass
class BlockSchema:
    name: str  # "google_x" for a resource or data source, the block path below it
    fields: dict[str, Field] = field(default_factory=dict)

    @property
    def required(self) -> set[str]:
        return {n for n, f in self.fields.items() if f.required}


class SchemaUnavailable(RuntimeError):
    """The bindings are not installed (or are not what the checker can read); the reason says which."""


def find_wheel(root: Path) -> Path:
    directory = root / ".tools" / "cdktf-google"
    wheels = sorted(directory.glob(f"{PACKAGE}-*.whl"))
    if not wheels:
        raise SchemaUnavailable(
            f"the Google provider's CDKTF bindings are not in .tools/cdktf-google "
            f"(KISGW_WITH_CHECKOV=1 bash scripts/bootstrap.sh downloads them); looked for {PACKAGE}-*.whl")
    return wheels[-1]


class ProviderSchema:
    """Resource and data-source schemas from one bindings wheel; each module parsed once."""

    def __init__(self, wheel: Path) -> None:
        self.wheel = wheel
        self.bindings_version = wheel.name.split("-")[1]
        try:
            self._zip = zipfile.ZipFile(wheel)
        except zipfile.BadZipFile as exc:
            raise SchemaUnavailable(f"{wheel.name} is not a readable wheel; delete .tools/cdktf-google and run "
                                    "KISGW_WITH_CHECKOV=1 bash scripts/bootstrap.sh again") from exc
        self._members = set(self._zip.namelist())
        self._modules: dict[str, tuple[dict[str, ast.ClassDef], BlockSchema | None, str]] = {}

    # -- reading the bindings --------------------------------------------------------------------------------

    def provider_version(self) -> str:
        """The provider version the bindings were generated from (read from a small module's links)."""
        return self._module("data", "google_client_config")[2]

    def schema(self, kind: str, rtype: str) -> BlockSchema | None:
        """The schema of resource (kind "resource") or data source (kind "data") `rtype`, or of the provider
        block (kind "provider", rtype "google"); None if unknown."""
        return self._module(kind, rtype)[1]

    def _module(self, kind: str, rtype: str) -> tuple[dict[str, ast.ClassDef], BlockSchema | None, str]:
        key = f"{kind}:{rtype}"
        if key not in self._modules:
            self._modules[key] = self._load(kind, rtype)
        return self._modules[key]

    def _load(self, kind: str, rtype: str) -> tuple[dict[str, ast.ClassDef], BlockSchema | None, str]:
        if kind == "provider":
            member = f"{PACKAGE}/provider/__init__.py"
        elif rtype.startswith("google_"):
            stem = rtype.removeprefix("google_")
            member = f"{PACKAGE}/{'data_google_' + stem if kind == 'data' else stem}/__init__.py"
        else:
            return {}, None, ""
        if member not in self._members:
            return {}, None, ""
        tree = ast.parse(self._zip.read(member))
        classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}
        for cls in classes.values():
            bases = {b.attr for b in cls.bases if isinstance(b, ast.Attribute)}
            link = LINK.search(ast.get_docstring(cls) or "")
            if BASES[kind] in bases and link and link.group("target") == rtype:
                schema = self._struct(classes, cls, rtype, top=True)
                return classes, schema, link.group("version")
        raise SchemaUnavailable(f"{member} has no class representing {kind} {rtype}: the bindings changed shape")

    def _struct(self, classes: dict[str, ast.ClassDef], cls: ast.ClassDef, path: str, top: bool = False,
                seen: tuple[str, ...] = ()) -> BlockSchema:
        init = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
        schema = BlockSchema(path)
        if init is None:
            return schema
        docs = {m.group(1): m.group(2).strip() for m in PARAM.finditer(ast.get_docstring(init) or "")}
        for arg, default in zip(init.args.kwonlyargs, init.args.kw_defaults, strict=True):
            if top and arg.arg in CDKTF_META:
                continue
            doc = docs.get(arg.arg, "")
            link = LINK.search(doc)
            name = link.group("anchor") if link and link.group("anchor") else arg.arg.rstrip("_")
            nested = self._nested_class(classes, arg.annotation, cls.name)
            fld = Field(name, required=default is None)
            if nested is not None and nested.name not in seen:
                fld.block = self._struct(classes, nested, f"{path}.{name}", seen=(*seen, cls.name))
                fld.multiple = "Sequence" in ast.unparse(arg.annotation)
            elif re.match(rf"{re.escape(name)} block\.", doc):
                raise SchemaUnavailable(f"{path}.{name} is documented as a block but no struct class was found")
            schema.fields[name] = fld
        return schema

    @staticmethod
    def _nested_class(classes: dict[str, ast.ClassDef], annotation: ast.expr | None, owner: str) -> ast.ClassDef | None:
        if annotation is None:
            return None
        refs = {n.value for n in ast.walk(annotation) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        refs |= {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)}
        # Config structs are plain classes; the OutputReference / List / Map helpers extend cdktf bases.
        structs = [classes[r] for r in sorted(refs) if r in classes and r != owner and not classes[r].bases]
        return structs[0] if len(structs) == 1 else None


@cache
def provider_schema(root: Path) -> ProviderSchema:
    """One ProviderSchema per test run: each module of the bindings is parsed at most once."""
    return ProviderSchema(find_wheel(root))


# -- reading the configuration ---------------------------------------------------------------------------------

def load_marked(path: Path) -> dict[str, Any]:
    """Parse a .tf file so that blocks can be told from attributes (python-hcl2 v8 marks them)."""
    try:
        from hcl2.utils import SerializationOptions
    except ImportError as exc:  # python-hcl2 v7 or the 0.x fork
        raise SchemaUnavailable(f"python-hcl2 {getattr(hcl2, '__version__', '?')} cannot mark blocks; "
                                "the schema check needs python-hcl2 8") from exc
    opts = SerializationOptions(strip_string_quotes=True, explicit_blocks=True, with_comments=False)
    with path.open() as fh:
        return hcl2.load(fh, serialization_options=opts)


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, dict) and v.get("__is_block__") for v in value)


def _is_labelled_block(value: Any) -> bool:
    """`dynamic "x" { ... }`, `provisioner "local-exec" { ... }`: the mark sits one level down, under the label."""
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, dict) and all(isinstance(b, dict) and b.get("__is_block__") for _, b in _body_items(v))
        for v in value)


def _body_items(body: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    return ((k, v) for k, v in body.items() if not k.startswith("__"))


def config_blocks(doc: Mapping[str, Any], kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every `resource` or `data` block of one parsed file."""
    for entry in doc.get(kind, []):
        for rtype, named in _body_items(entry):
            for name, body in _body_items(named):
                yield rtype, name, body


# -- checking ------------------------------------------------------------------------------------------------

class Checker:
    def __init__(self, schema: ProviderSchema) -> None:
        self.schema = schema
        self.errors: list[str] = []
        self.checked: list[str] = []  # "resource google_x.name" per block checked

    def check_files(self, files: Mapping[str, Mapping[str, Any]]) -> list[str]:
        for fname, doc in files.items():
            for entry in doc.get("provider", []):
                for pname, body in _body_items(entry):
                    if pname == "google":
                        self.checked.append("provider google")
                        schema = self.schema.schema("provider", "google")
                        assert schema is not None
                        self._body(f"{fname}: provider google", schema, body)
            for kind in ("resource", "data"):
                for rtype, name, body in config_blocks(doc, kind):
                    if rtype.startswith("google_"):
                        self.check_block(fname, kind, rtype, name, body)
        return self.errors

    def check_block(self, fname: str, kind: str, rtype: str, name: str, body: Mapping[str, Any]) -> None:
        where = f"{fname}: {'data.' if kind == 'data' else ''}{rtype}.{name}"
        self.checked.append(f"{kind} {rtype}.{name}")
        schema = self.schema.schema(kind, rtype)
        if schema is None:
            self.errors.append(f"{where}: no {kind} type {rtype} in google provider "
                               f"{self.schema.provider_version()}")
            return
        if "count" in body and "for_each" in body:
            self.errors.append(f"{where}: count and for_each are mutually exclusive")
        self._body(where, schema, body, meta=kind)

    def _err(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def _body(self, where: str, schema: BlockSchema, body: Mapping[str, Any], meta: str | None = None) -> None:
        present: set[str] = set()
        static_count: dict[str, int] = {}
        for key, value in _body_items(body):
            if key == "dynamic" and _is_labelled_block(value):
                for entry in value:
                    for bname, dyn in _body_items(entry):
                        present.add(bname)
                        self._dynamic(where, schema, bname, dyn)
                continue
            if meta is not None and key in META_ATTRIBUTES and not _is_block(value):
                continue
            if meta is not None and key in META_BLOCKS[meta] and (
                    _is_labelled_block(value) if key == "provisioner" else _is_block(value)):
                if key == "lifecycle":
                    self._lifecycle(where, meta, value)
                continue
            fld = schema.fields.get(key)
            if fld is None:
                what = "block" if _is_block(value) else "argument"
                self._err(where, f"unknown {what} {key!r} (not in the schema of {schema.name})")
                continue
            present.add(key)
            if fld.block is None:
                if _is_block(value):
                    self._err(where, f"{key!r} is an argument: write `{key} = ...`, not a block")
                continue
            if not _is_block(value):
                self._err(where, f"{key!r} is a block: write `{key} {{ ... }}`, not `{key} = ...`")
                continue
            static_count[key] = len(value)
            for item in value:
                self._body(f"{where}.{key}", fld.block, item)
        for key, count in static_count.items():
            if count > 1 and not schema.fields[key].multiple:
                self._err(where, f"block {key!r} may appear at most once, found {count}")
        for key in sorted(schema.required - present):
            what = "block" if schema.fields[key].block is not None else "argument"
            self._err(where, f"missing required {what} {key!r}")

    def _dynamic(self, where: str, schema: BlockSchema, bname: str, dyn: Mapping[str, Any]) -> None:
        here = f"{where}.dynamic[{bname}]"
        fld = schema.fields.get(bname)
        if fld is None or fld.block is None:
            reason = "an argument, not a block" if fld is not None else f"not in the schema of {schema.name}"
            self._err(here, f"dynamic block for {bname!r}, which is {reason}")
            return
        allowed = {"for_each", "iterator", "labels", "content"}
        for key, _ in _body_items(dyn):
            if key not in allowed:
                self._err(here, f"unknown argument {key!r} of a dynamic block")
        if "for_each" not in dyn:
            self._err(here, "missing required argument 'for_each'")
        content = dyn.get("content")
        if not _is_block(content) or len(content) != 1:
            self._err(here, "needs exactly one content block")
            return
        self._body(f"{where}.{bname}", fld.block, content[0])

    def _lifecycle(self, where: str, kind: str, value: list[dict[str, Any]]) -> None:
        attributes, nested = LIFECYCLE[kind]
        for item in value:
            for key, sub in _body_items(item):
                if (key in nested and _is_block(sub)) or (key in attributes and not _is_block(sub)):
                    continue
                self._err(f"{where}.lifecycle", f"unknown lifecycle setting {key!r} for a {kind} block")


# -- version constraints ---------------------------------------------------------------------------------------

def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.strip().split("."))


def _pad(v: tuple[int, ...]) -> tuple[int, ...]:
    return (*v, *(0,) * (3 - len(v)))


def allows(constraint: str, version: str) -> bool:
    """Whether a Terraform version constraint ("~> 6.50", ">= 6.0, < 7.0", ...) admits `version`."""
    have = _pad(_version(version))
    for part in constraint.split(","):
        m = re.fullmatch(r"\s*(~>|>=|<=|!=|=|>|<)?\s*([\d.]+)\s*", part)
        if not m:
            raise ValueError(f"cannot read version constraint {part!r}")
        op, raw = m.group(1) or "=", _version(m.group(2))
        want = _pad(raw)
        ok = {
            "=": have == want, "!=": have != want, ">": have > want, ">=": have >= want,
            "<": have < want, "<=": have <= want,
            # ~> 6.50 admits 6.50 up to (not including) 7; ~> 6.50.1 admits 6.50.1 up to 6.51.
            "~>": have >= want and have[:len(raw) - 1] == raw[:len(raw) - 1],
        }[op]
        if not ok:
            return False
    return True
