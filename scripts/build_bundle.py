"""Build the one source zip every Cloud Function (2nd gen) is deployed from.

Layout inside the zip: `main.py` (a copy of functions/main.py, because the Python runtime loads main.py from
the source root), `functions/` and `shared/` beside it, the bytecode of their modules (below), and a
requirements.txt made from pyproject's runtime dependencies. Tests, virtualenvs and caches stay out, and so do
the development tools (`DEV_ONLY`: the KIS simulator, the benchmark, the local stack, the local stand-ins of
Cloud services and the `kisgw` command that starts them); the import contracts in pyproject.toml keep
production code from needing them. The zip is deterministic (sorted entries, fixed timestamps), so the same
source gives the same file name and Terraform redeploys only on real changes.

Bytecode: every instance starts from the deployed source, so bytecode Python writes at run time dies with the
instance; without bytecode in the bundle every cold start compiles every module it imports again (0.1-0.15 s
of a quotes function's start on a 2-core machine). The bundle carries `<dir>/__pycache__/<module>.<tag>.pyc`
for each module, compiled by the interpreter that builds it, hash-checked against the source (so an unzipped
timestamp never makes it stale, and the zip stays deterministic). The tag names the interpreter
(`cpython-311`): build with the Python of Terraform's `python_runtime`, or the runtime ignores the files and
compiles as before.

    python scripts/build_bundle.py [--root .] [--out dist]   # prints the zip's path
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import importlib.util
import io
import py_compile
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("functions", "shared")
EXCLUDED_DIRS = frozenset({"__pycache__", "tests", "test", ".venv", "venv", ".pytest_cache", ".mypy_cache",
                           ".ruff_cache", ".git", "node_modules", "build", "dist"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".DS_Store", ".swp")
# Development tools, as POSIX path patterns relative to the repository root (fnmatch; `*` spans `/`).
DEV_ONLY = (
    "shared/sim/*",  # the KIS simulator
    "shared/bench/*",  # the benchmark
    "shared/localstack.py",  # the local stack
    "shared/front.py",  # the local stack's stand-in for the load balancer
    "shared/loopback.py",  # ports for the processes the local stack starts
    "shared/cli.py",  # `kisgw`: starts the simulator, the benchmark and the local stack
    "shared/cloud/local_*",  # local stand-ins of Cloud services
    "shared/cloud/*_server.py",
)
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: keeps the archive byte-identical across builds
BUNDLE_PREFIX = "kisgw-"


class BundleError(RuntimeError):
    """The repository lacks something the bundle needs."""


def runtime_requirements(pyproject: Path) -> list[str]:
    """The `[project].dependencies` of pyproject.toml, one requirement per entry (dev extras left out)."""
    with pyproject.open("rb") as fh:
        data = tomllib.load(fh)
    deps = data.get("project", {}).get("dependencies", [])
    if not deps:
        raise BundleError(f"{pyproject.name} has no [project].dependencies")
    return [str(d).strip() for d in deps]


def dev_only(name: str) -> bool:
    """True for a development tool's file (`name` is a POSIX path relative to the repository root)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in DEV_ONLY)


def _excluded(rel: Path) -> bool:
    if dev_only(rel.as_posix()):
        return True
    if any(part in EXCLUDED_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
        return True
    return rel.name in EXCLUDED_DIRS or rel.name.endswith(EXCLUDED_SUFFIXES) or rel.name.startswith(".")


def _package_files(root: Path, package: str) -> Iterator[tuple[str, Path]]:
    base = root / package
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not _excluded(rel):
            yield rel.as_posix(), path


def bundle_members(root: Path) -> dict[str, bytes]:
    """Archive name -> content for everything the bundle holds."""
    main = root / "functions" / "main.py"
    if not main.is_file():
        raise BundleError("functions/main.py is missing: it holds the entry points the bundle deploys")
    members: dict[str, bytes] = {"main.py": main.read_bytes()}
    for package in PACKAGES:
        if not (root / package).is_dir():
            raise BundleError(f"{package}/ is missing")
        for name, path in _package_files(root, package):
            members[name] = path.read_bytes()
    members.update(bytecode(members))
    reqs = runtime_requirements(root / "pyproject.toml")
    members["requirements.txt"] = ("\n".join(reqs) + "\n").encode()
    return members


def bytecode(members: dict[str, bytes]) -> dict[str, bytes]:
    """Archive name -> hash-checked bytecode of each Python module in `members`, named as the running
    interpreter looks for it (`importlib.util.cache_from_source`)."""
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in members.items():
            if not name.endswith(".py"):
                continue
            src = Path(tmp) / "m.py"
            src.write_bytes(source)
            pyc = Path(py_compile.compile(str(src), cfile=str(Path(tmp) / "m.pyc"), dfile=name, doraise=True,
                                          invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH))
            out[Path(importlib.util.cache_from_source(name)).as_posix()] = pyc.read_bytes()
    return out


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, members[name])
    return buf.getvalue()


def build_bundle(root: Path = ROOT, out_dir: Path | None = None) -> Path:
    """Write `<out_dir>/kisgw-<sha256[:12]>.zip` and return its path; the hash names the content."""
    data = zip_bytes(bundle_members(root))
    out_dir = out_dir if out_dir is not None else root / "dist"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{BUNDLE_PREFIX}{hashlib.sha256(data).hexdigest()[:12]}.zip"
    path.write_bytes(data)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: <root>/dist)")
    args = parser.parse_args(argv)
    try:
        path = build_bundle(args.root.resolve(), args.out)
    except BundleError as exc:
        print(f"build_bundle: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
