"""KIS's daily symbol master files: download and parse (kospi/kosdaq/konex_code.mst.zip).

Each zip holds one fixed-width text file in cp949. A line is the short code (9 characters, left-aligned),
the standard code (ISIN, 12 characters), the Korean name (variable), then a fixed-width tail of flags and
figures: 227 characters on KOSPI, 221 on KOSDAQ, 184 on KONEX. The widths and field order follow the
official repository's `stocks_info/kis_kospi_code_mst.py`, `kis_kosdaq_code_mst.py` and
`kis_konex_code_mst.py` (which also give the download location, `shared.config.KIS_MASTER_URL`);
positions are in characters of the decoded text, as there (the names are double-byte in cp949, the tail
is ASCII).
Only the fields users filter on are read: security group (ETF/ETN), trading halt, administrative issue,
plus base price, listing date and listed shares.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from shared.lazy import lazy_module

if TYPE_CHECKING:
    import requests
else:
    requests = lazy_module("requests")  # only a download needs it (readers only parse names and flags)

MASTER_FILES: dict[str, str] = {"KOSPI": "kospi_code.mst.zip", "KOSDAQ": "kosdaq_code.mst.zip",
                                "KONEX": "konex_code.mst.zip"}
TAIL_WIDTH: dict[str, int] = {"KOSPI": 227, "KOSDAQ": 221, "KONEX": 184}
MAX_ZIP_BYTES = 50 * 1024 * 1024  # the real files are a few hundred kB each

# (start, width) inside the tail, per market, of the fields kept.
_FIELDS: dict[str, dict[str, tuple[int, int]]] = {
    "KOSPI": {"group": (0, 2), "etp": (22, 1), "spac": (29, 1), "base_price": (41, 9), "halted": (60, 1),
              "liquidation": (61, 1), "managed": (62, 1), "listed": (105, 8), "shares": (113, 15),
              "preferred": (158, 1)},
    "KOSDAQ": {"group": (0, 2), "etp": (18, 1), "spac": (24, 1), "base_price": (36, 9), "halted": (55, 1),
               "liquidation": (56, 1), "managed": (57, 1), "listed": (100, 8), "shares": (108, 15),
               "preferred": (153, 1)},
    "KONEX": {"group": (0, 2), "base_price": (2, 9), "halted": (21, 1), "liquidation": (22, 1),
              "managed": (23, 1), "listed": (66, 8), "shares": (74, 15), "preferred": (119, 1)},
}
ETF_GROUPS = frozenset({"EF", "FE"})  # ETF, foreign ETF
ETN_GROUPS = frozenset({"EN"})


class MasterError(Exception):
    """A master file could not be downloaded or read."""


@dataclass(frozen=True)
class MasterSymbol:
    code: str  # short code, e.g. 005930 (six characters; a few newer ones hold a letter)
    std_code: str  # ISIN, e.g. KR7005930003
    name: str  # Korean name
    market: str  # KOSPI | KOSDAQ | KONEX
    group: str  # KRX security group: ST share, EF ETF, EN ETN, RT REIT, ...
    etf: bool
    etn: bool
    halted: bool  # 거래정지
    managed: bool  # 관리종목 (administrative issue)
    liquidation: bool  # 정리매매
    base_price: int
    listed: str  # YYYYMMDD or ""
    shares: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MasterSymbol:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def parse_master(market: str, text: str) -> list[MasterSymbol]:
    """Every line of one decoded master file; lines too short to hold the layout are skipped."""
    if market not in TAIL_WIDTH:
        raise ValueError(f"market {market!r} must be one of {tuple(TAIL_WIDTH)}")
    width, fields = TAIL_WIDTH[market], _FIELDS[market]
    out: list[MasterSymbol] = []
    for raw in text.splitlines():
        line = raw.rstrip("\r\n")
        if len(line) < 21 + width:
            continue
        head, tail = line[:-width], line[-width:]
        code = head[0:9].strip()
        if not code:
            continue

        def get(name: str, tail: str = tail) -> str:
            spec = fields.get(name)
            return tail[spec[0]:spec[0] + spec[1]].strip() if spec else ""

        group = get("group")
        listed = get("listed")
        out.append(MasterSymbol(
            code=code, std_code=head[9:21].strip(), name=head[21:].strip(), market=market, group=group,
            etf=group in ETF_GROUPS, etn=group in ETN_GROUPS,
            halted=get("halted") == "Y", managed=get("managed") == "Y", liquidation=get("liquidation") == "Y",
            base_price=_int(get("base_price")), listed=listed if listed.strip("0") else "",
            shares=_int(get("shares"))))
    return out


def parse_zip(market: str, data: bytes) -> list[MasterSymbol]:
    """One downloaded zip: its single .mst member, decoded as cp949."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [m for m in zf.infolist() if m.filename.lower().endswith(".mst")]
            if len(members) != 1:
                raise MasterError(f"{MASTER_FILES[market]} holds {len(members)} .mst files, expected 1")
            if members[0].file_size > MAX_ZIP_BYTES:
                raise MasterError(f"{members[0].filename} is larger than {MAX_ZIP_BYTES} bytes")
            raw = zf.read(members[0])
    except zipfile.BadZipFile as exc:
        raise MasterError(f"{MASTER_FILES[market]} is not a zip file ({exc})") from None
    try:
        text = raw.decode("cp949")
    except UnicodeDecodeError as exc:
        raise MasterError(f"{MASTER_FILES[market]} is not cp949 text ({exc.reason})") from None
    return parse_master(market, text)


def download_masters(base_url: str, *, session: requests.Session | None = None,
                     timeout_s: float = 30.0) -> list[MasterSymbol]:
    """All three files from `base_url` (KIS's location, or the simulator's). Any failure raises
    MasterError: a partial master would call listed codes unknown."""
    http = session or requests.Session()
    symbols: list[MasterSymbol] = []
    try:
        for market, name in MASTER_FILES.items():
            url = f"{base_url.rstrip('/')}/{name}"
            try:
                resp = http.get(url, timeout=timeout_s, stream=True)
            except requests.RequestException as exc:
                raise MasterError(f"{name}: download failed ({type(exc).__name__})") from None
            with resp:
                if resp.status_code != 200:
                    raise MasterError(f"{name}: HTTP {resp.status_code}")
                data = resp.raw.read(MAX_ZIP_BYTES + 1, decode_content=True)
            if len(data) > MAX_ZIP_BYTES:
                raise MasterError(f"{name} is larger than {MAX_ZIP_BYTES} bytes")
            found = parse_zip(market, data)
            if not found and market != "KONEX":
                raise MasterError(f"{name} lists no symbols")
            symbols.extend(found)
    finally:
        if session is None:
            http.close()
    return symbols


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0
