"""The simulated universe as KIS's master files: kospi/kosdaq/konex_code.mst.zip, fixed-width, cp949.

Layout per line: short code (9, left-aligned), standard code (12), Korean name, then the fixed-width tail
whose field widths are those of the official repository's `stocks_info/kis_kospi_code_mst.py` (70 fields,
227 characters), `kis_kosdaq_code_mst.py` (64 fields, 221) and `kis_konex_code_mst.py` (38 fields, 184).
Fields the simulator does not model hold "N" (one character) or zeros; the last field is always a
non-blank flag, as the KONEX reader strips each line before cutting the tail off its end.
The universe keeps each zip once built.
"""

from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING

from shared.sim.quote_fields import isin

if TYPE_CHECKING:
    from shared.sim.universe import Instrument, Universe

# Tail widths in field order, and the index of each field the simulator fills.
KOSPI_WIDTHS = (2, 1, 4, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                1, 9, 5, 5, 1, 1, 1, 2, 1, 1, 1, 2, 2, 2, 3, 1, 3, 12, 12, 8, 15, 21, 2, 7, 1, 1, 1, 1, 1, 9,
                9, 9, 5, 9, 8, 9, 3, 1, 1, 1)
KOSDAQ_WIDTHS = (2, 1, 4, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 5, 5, 1,
                 1, 1, 2, 1, 1, 1, 2, 2, 2, 3, 1, 3, 12, 12, 8, 15, 21, 2, 7, 1, 1, 1, 1, 9, 9, 9, 5, 9, 8,
                 9, 3, 1, 1, 1)
KONEX_WIDTHS = (2, 9, 5, 5, 1, 1, 1, 2, 1, 1, 1, 2, 2, 2, 3, 1, 3, 12, 12, 8, 15, 21, 2, 7, 1, 1, 1, 1, 9,
                9, 9, 5, 9, 8, 9, 1, 1, 1)
# field -> index in the widths above (group code, ETP, base price, halt, liquidation, administrative issue,
# face value, listing date, listed shares, preferred-share code)
KOSPI_AT = {"group": 0, "etp": 12, "base": 31, "unit": 32, "halted": 34, "liquidation": 35, "managed": 36,
            "par": 48, "listed": 49, "shares": 50, "preferred": 54}
KOSDAQ_AT = {"group": 0, "etp": 8, "base": 26, "unit": 27, "halted": 29, "liquidation": 30, "managed": 31,
             "par": 43, "listed": 44, "shares": 45, "preferred": 49}
KONEX_AT = {"group": 0, "base": 1, "unit": 2, "halted": 4, "liquidation": 5, "managed": 6, "par": 18,
            "listed": 19, "shares": 20, "preferred": 24}
LAYOUTS = {"KOSPI": (KOSPI_WIDTHS, KOSPI_AT), "KOSDAQ": (KOSDAQ_WIDTHS, KOSDAQ_AT),
           "KONEX": (KONEX_WIDTHS, KONEX_AT)}
FILES = {"kospi_code.mst.zip": "KOSPI", "kosdaq_code.mst.zip": "KOSDAQ", "konex_code.mst.zip": "KONEX"}

def master_line(inst: Instrument) -> str:
    widths, at = LAYOUTS[inst.market]
    values = ["N" if w == 1 else "0" * w for w in widths]

    def put(field: str, value: str) -> None:
        i = at.get(field)
        if i is None:
            return
        w = widths[i]
        values[i] = value[:w].rjust(w, "0") if value.isdigit() else value[:w].ljust(w)

    put("group", inst.group)
    if inst.group in ("EF", "EN"):
        put("etp", "Y")
    put("base", str(inst.base))
    put("unit", "1")
    put("halted", "Y" if inst.halted else "N")
    put("managed", "Y" if inst.managed else "N")
    put("par", str(inst.par))
    put("listed", inst.listed.strftime("%Y%m%d"))
    put("shares", str(inst.shares))
    put("preferred", "0")
    tail = "".join(values)
    assert len(tail) == sum(widths) and tail[-1] != " "
    return f"{inst.code:<9}{isin(inst.code):<12}{inst.name}{tail}"


def master_text(universe: Universe, market: str) -> str:
    return "".join(master_line(i) + "\n" for i in universe.listed() if i.market == market)


def master_zip(universe: Universe, name: str) -> bytes | None:
    market = FILES.get(name)
    if market is None:
        return None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name[:-len(".zip")], master_text(universe, market).encode("cp949"))
    return buf.getvalue()
