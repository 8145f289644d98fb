"""scripts/build_bundle.py: one deterministic zip with main.py at the root and shared/ beside it."""

from __future__ import annotations

import importlib.util
import zipfile

import pytest
from tf_helpers import ROOT


def make_repo(root):
    (root / "functions").mkdir(parents=True)
    (root / "functions" / "__init__.py").write_text("")
    (root / "functions" / "main.py").write_text("import functions_framework\n")
    (root / "shared" / "kis").mkdir(parents=True)
    (root / "shared" / "__init__.py").write_text("")
    (root / "shared" / "kis" / "client.py").write_text("X = 1\n")
    (root / "shared" / "market").mkdir()
    (root / "shared" / "market" / "limiter.lua").write_text("return 1\n")
    # Things that must stay out.
    (root / "shared" / "__pycache__").mkdir()
    (root / "shared" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "shared" / ".pytest_cache").mkdir()
    (root / "shared" / ".pytest_cache" / "v").write_text("")
    (root / "shared" / "tests").mkdir()
    (root / "shared" / "tests" / "test_x.py").write_text("")
    (root / "tests").mkdir()
    (root / "tests" / "test_y.py").write_text("")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "site.py").write_text("")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = [\n  "functions-framework>=3.10,<4",\n  "redis>=5,<7",\n]\n'
        '[project.optional-dependencies]\ndev = ["pytest>=8"]\n')


def test_bundle_layout(build_bundle, tmp_path):
    repo = tmp_path / "repo"
    make_repo(repo)
    path = build_bundle.build_bundle(repo, tmp_path / "out")
    assert path.parent == tmp_path / "out" and path.name.startswith("kisgw-") and path.suffix == ".zip"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert zf.read("main.py") == b"import functions_framework\n"
        assert zf.read("requirements.txt").decode().splitlines() == ["functions-framework>=3.10,<4", "redis>=5,<7"]
    assert {"shared/__init__.py", "shared/kis/client.py", "shared/market/limiter.lua", "functions/main.py"} <= names
    sources = {n for n in names if n.endswith(".py")}
    compiled = {n for n in names if "__pycache__" in n}
    # The bundle's own bytecode, one file per module under this interpreter's tag; never a stray cache file.
    assert compiled == {importlib.util.cache_from_source(n) for n in sources}
    assert "shared/__pycache__/x.cpython-311.pyc" not in names
    for name in names - compiled:
        parts = name.split("/")
        assert not {"tests", "__pycache__", ".pytest_cache", ".venv"} & set(parts), name
        assert not name.endswith(".pyc"), name
    assert "pytest" not in " ".join(names)


def test_bundled_bytecode_is_checked_against_its_source_and_loads(build_bundle, tmp_path):
    """The runtime cannot write bytecode into the deployed source: the bundle's own is what spares each cold
    start compiling every module again. It is hash-checked, so it is used whatever the unzipped files' dates
    are, and ignored (the source compiled instead) if a source file differs from what it was built from."""
    repo = tmp_path / "repo"
    make_repo(repo)
    out = tmp_path / "unzipped"
    with zipfile.ZipFile(build_bundle.build_bundle(repo, tmp_path / "out")) as zf:
        zf.extractall(out)
    pyc = out / importlib.util.cache_from_source("shared/kis/client.py")
    data = pyc.read_bytes()
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(data[4:8], "little") == 0b11  # hash-based, checked
    assert data[8:16] == importlib.util.source_hash((out / "shared/kis/client.py").read_bytes())
    spec = importlib.util.spec_from_file_location("bundled_client", out / "shared/kis/client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.X == 1


def test_bundle_is_deterministic_and_named_by_content(build_bundle, tmp_path):
    repo = tmp_path / "repo"
    make_repo(repo)
    first = build_bundle.build_bundle(repo, tmp_path / "a")
    second = build_bundle.build_bundle(repo, tmp_path / "b")
    assert first.name == second.name and first.read_bytes() == second.read_bytes()
    (repo / "shared" / "kis" / "client.py").write_text("X = 2\n")
    third = build_bundle.build_bundle(repo, tmp_path / "c")
    assert third.name != first.name


def test_missing_main_is_refused(build_bundle, tmp_path, capsys):
    repo = tmp_path / "repo"
    make_repo(repo)
    (repo / "functions" / "main.py").unlink()
    assert build_bundle.main(["--root", str(repo), "--out", str(tmp_path / "out")]) == 2
    assert "functions/main.py" in capsys.readouterr().err


def test_real_repository_bundle(build_bundle, tmp_path):
    if not (ROOT / "functions" / "main.py").exists():
        pytest.skip("functions/main.py not written yet")
    path = build_bundle.build_bundle(ROOT, tmp_path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        reqs = zf.read("requirements.txt").decode()
    assert "main.py" in names and "shared/config.py" in names
    assert not any(n.startswith(("tests/", ".venv/")) for n in names)
    assert {n for n in names if "__pycache__" in n} == {importlib.util.cache_from_source(n) for n in names
                                                         if n.endswith(".py")}
    for dep in ("functions-framework", "redis", "google-cloud-tasks", "pybreaker"):
        assert dep in reqs
    assert "pytest" not in reqs and "checkov" not in reqs


DEV_TOOLS = ("shared/sim/__init__.py", "shared/sim/server.py", "shared/bench/__init__.py", "shared/bench/cli.py",
             "shared/localstack.py", "shared/front.py", "shared/loopback.py", "shared/cli.py",
             "shared/cloud/local_firestore.py",
             "shared/cloud/local_scheduler.py", "shared/cloud/local_tasks_server.py",
             "shared/cloud/local_tasks_dispatch.py", "shared/cloud/secret_manager_server.py")


def test_bundle_leaves_development_tools_out(build_bundle, tmp_path):
    repo = tmp_path / "repo"
    make_repo(repo)
    for name in (*DEV_TOOLS, "shared/cloud/__init__.py", "shared/cloud/tasks.py", "shared/cloud/secret_manager.py"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("X = 1\n")
    with zipfile.ZipFile(build_bundle.build_bundle(repo, tmp_path / "out")) as zf:
        names = set(zf.namelist())
    assert not set(DEV_TOOLS) & names
    assert {"shared/cloud/__init__.py", "shared/cloud/tasks.py", "shared/cloud/secret_manager.py"} <= names


def _module_file(module: str) -> str:
    path = ROOT / module.replace(".", "/")
    return (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(ROOT).as_posix()


def test_real_bundle_holds_what_the_functions_import_and_no_development_tool(build_bundle, tmp_path):
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("functions", "shared")
    closure = {"functions.main", *graph.find_upstream_modules("functions.main")}
    with zipfile.ZipFile(build_bundle.build_bundle(ROOT, tmp_path)) as zf:
        names = set(zf.namelist())
    needed = {_module_file(m) for m in closure}
    assert needed <= names, sorted(needed - names)
    assert not any(build_bundle.dev_only(n) for n in needed), sorted(n for n in needed if build_bundle.dev_only(n))
    assert not [n for n in names if n.startswith(("shared/sim/", "shared/bench/"))
                or n in ("shared/localstack.py", "shared/front.py", "shared/loopback.py", "shared/cli.py")
                or n.rsplit("/", 1)[-1].startswith("local_") or n.endswith("_server.py")]
