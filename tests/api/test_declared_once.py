"""No wiring of the HTTP layer or the settings is written twice: routes and scopes only in the route table, the
status readout only in the status module, each setting once, the error mapping once."""

from __future__ import annotations

import re
from pathlib import Path

from shared.config import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
              for p in sorted([*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")])
              if not p.relative_to(ROOT).as_posix().startswith(("shared/sim/", "shared/bench/"))}


def _lines(pattern: str, *, skip: tuple[str, ...] = ()) -> list[str]:
    rx = re.compile(pattern)
    return [f"{path}:{n}" for path, text in PRODUCTION.items() if path not in skip
            for n, line in enumerate(text.splitlines(), 1) if rx.search(line)]


def test_routes_are_declared_only_in_the_route_table():
    # A (method, path) pair is a route declaration; only shared/api/routes.py (and the route type) make them.
    assert _lines(r"""\(\s*["'](GET|POST)["']\s*,\s*["']/""", skip=("shared/api/routes.py",)) == []
    assert _lines(r"""Route\(\s*["'](GET|POST)["']""", skip=("shared/api/routes.py",)) == []


def test_scopes_are_not_keyed_by_handler_names():
    assert _lines(r"""["']shared\.api\.\w+\.\w+["']""") == []


def test_the_status_readout_is_read_only_in_the_status_module():
    readout = (r"limiter\.snapshot\(\)|pending\[\w+\]\.size\(\)|breaker\.describe\(\)|breaker\.state\b"
               r"|tokens\.status\(\)")
    http_layer = [line for line in _lines(readout, skip=("shared/api/status.py",))
                  if line.startswith(("shared/api/", "functions/"))]
    # The refresh handler answers with the token's state after refreshing it: that is its answer, not a readout.
    assert [line for line in http_layer if not line.startswith("shared/api/handlers.py")] == []
    assert len([line for line in http_layer if line.startswith("shared/api/handlers.py")]) == 2


def test_each_setting_is_declared_once():
    config = PRODUCTION["shared/config.py"]
    names = [v.env for v in VARIABLES]
    assert len(names) == len(set(names))
    for name in names:
        assert len(re.findall(rf"""["']{name}["']""", config)) == 1, name


def test_the_error_mapping_is_written_once():
    assert len(_lines(r"cache unavailable; retry shortly")) == 1
    assert len(_lines(r"""["']code["']: ["']internal["']""")) == 1
