"""Offline views of the Terraform configuration and the two deploy scripts.

Two parsers install as the `hcl2` module: python-hcl2 (v7/v8) and the fork checkov depends on (0.x), which
wraps every attribute value in a one-element list. Whichever is installed last wins, so `attr()` reads both.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
ATTRS_WRAPPED = str(getattr(hcl2, "__version__", "0")).startswith("0.")


def load_tf(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        if "serialization_options" in inspect.signature(hcl2.load).parameters:  # python-hcl2 v8
            from hcl2.utils import SerializationOptions
            opts = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
            return hcl2.load(fh, serialization_options=opts)
        return hcl2.load(fh)


def attr(body: dict[str, Any], name: str, default: Any = KeyError) -> Any:
    """An attribute's value, whichever parser produced `body`."""
    if name not in body:
        if default is KeyError:
            raise KeyError(name)
        return default
    value = body[name]
    if ATTRS_WRAPPED and isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return list(body.get(name, []))


def load_script(name: str) -> ModuleType:
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"kisgw_scripts_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class TerraformConfig:
    """Every .tf file of terraform/, parsed, with lookups by block kind."""

    def __init__(self, directory: Path) -> None:
        self.files = {p.name: load_tf(p) for p in sorted(directory.glob("*.tf"))}
        self.text = {p.name: p.read_text() for p in sorted(directory.glob("*.tf"))}

    def _all(self, kind: str) -> list[dict[str, Any]]:
        return [b for doc in self.files.values() for b in doc.get(kind, [])]

    def resources(self, rtype: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for block in self._all("resource"):
            for t, named in block.items():
                if t == rtype:
                    out.update({n: b for n, b in named.items() if not n.startswith("__")})
        return out

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        return self.resources(rtype)[name]

    def resource_types(self) -> set[str]:
        return {t for block in self._all("resource") for t in block if not t.startswith("__")}

    def variables(self) -> dict[str, dict[str, Any]]:
        return {n: b for block in self._all("variable") for n, b in block.items() if not n.startswith("__")}

    def locals(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for block in self._all("locals"):
            out.update({k: attr(block, k) for k in block if not k.startswith("__")})
        return out

    def outputs(self) -> dict[str, dict[str, Any]]:
        return {n: b for block in self._all("output") for n, b in block.items() if not n.startswith("__")}

    def terraform_blocks(self) -> list[dict[str, Any]]:
        return self._all("terraform")

    def providers(self) -> list[dict[str, Any]]:
        return self._all("provider")


@pytest.fixture(scope="session")
def tf() -> TerraformConfig:
    return TerraformConfig(TF_DIR)


@pytest.fixture(scope="session")
def gen_tfvars() -> ModuleType:
    return load_script("gen_tfvars")


@pytest.fixture(scope="session")
def build_bundle() -> ModuleType:
    return load_script("build_bundle")
