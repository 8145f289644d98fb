"""Where things live: every Lua script is a file under shared/market/lua loaded by one function, every Redis
key is built in shared/market/redis_keys.py, and the import cycles that once were are gone. (The full import
contracts of pyproject.toml are checked by `lint-imports` in the test command.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.market import redis_keys

ROOT = Path(__file__).resolve().parents[1]
LUA_DIR = ROOT / "shared" / "market" / "lua"
PRODUCTION = [p for p in sorted((ROOT / "shared").rglob("*.py"))
              if not p.relative_to(ROOT).as_posix().startswith(("shared/sim/", "shared/bench/"))]
SCRIPTS = sorted(p.stem for p in LUA_DIR.glob("*.lua"))


def test_every_lua_script_is_a_file_under_the_one_lua_directory():
    outside = [p.relative_to(ROOT).as_posix() for p in (ROOT / "shared").rglob("*.lua") if p.parent != LUA_DIR]
    assert outside == []
    inline = [p.relative_to(ROOT).as_posix() for p in PRODUCTION if "redis.call(" in p.read_text(encoding="utf-8")]
    assert inline == []


def test_scripts_are_registered_only_through_the_loader():
    registered = re.compile(r"register_script\((?!redis_keys\.lua_source\()")
    elsewhere = [f"{p.relative_to(ROOT).as_posix()}:{n}" for p in PRODUCTION
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if registered.search(line)]
    assert elsewhere == []


@pytest.mark.parametrize("name", [s for s in SCRIPTS if s != "limiter_common"])
def test_each_script_compiles_in_redis(redis_client, name):
    source = redis_keys.lua_source(name)
    assert redis_client.script_load(source) == redis_client.register_script(source).sha


def test_redis_keys_are_built_only_in_redis_keys():
    # An f-string that starts with a key prefix (`prefix`, `self._prefix`, `settings.redis_prefix`) builds a key.
    key_literal = re.compile(r"""f["']\{[\w.]*prefix\}:""")
    builders = [f"{p.relative_to(ROOT).as_posix()}:{n}" for p in PRODUCTION if p.name != "redis_keys.py"
                for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if key_literal.search(line)]
    assert builders == []


@pytest.mark.parametrize(("one", "other"), [
    ("shared.gateway", "shared.observability.metrics"),
    ("shared.orders.idempotency", "shared.orders.firestore_store"),
    ("shared.cloud.secret_manager", "shared.cloud.token_store"),
    ("shared.market", "shared.cloud"),
])
def test_no_import_cycle_between(one, other):
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("shared", "functions", cache_dir=None)
    packages = one.count(".") == 1  # shared.market and shared.cloud: every module inside them
    there = graph.chain_exists(importer=one, imported=other, as_packages=packages)
    back = graph.chain_exists(importer=other, imported=one, as_packages=packages)
    assert not (there and back), f"{one} and {other} import each other"


# The one import cycle left on purpose, in the simulator (a development tool): Universe.master_zip builds its
# master files on first use with a function-level import of master_files (as pyproject's no-cycles contract says).
ALLOWED_EDGES = {("shared.sim.universe", "shared.sim.master_files")}


def _cycles(graph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over direct imports."""
    adj = {m: sorted(x for x in graph.find_modules_directly_imported_by(m)
                     if x in modules and (m, x) not in ALLOWED_EDGES) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return found


def test_no_import_cycle_among_any_modules():
    # Module by module, not only between siblings: no chain of imports leads from a module back to itself.
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("shared", "functions", cache_dir=None)
    modules = {m for m in graph.modules if m.split(".")[0] in ("shared", "functions")}
    assert _cycles(graph, modules) == []
