"""The simulated listing: ~2,500 KOSPI/KOSDAQ-like stocks and three indices, fixed by the seed.

Well-known codes keep their real names so fixtures read naturally; the rest are generated from Korean
syllables (with a romanised English name) and 6-character codes, a few in the newer letter form (0001A0).
Prices are integers in price units: won for stocks, hundredths of a point for indices.
"""

from __future__ import annotations

import math
import random
import threading
import zlib
from dataclasses import dataclass
from datetime import date, timedelta

from shared.sim.ticks import round_to_tick


@dataclass(frozen=True, eq=False)  # identity hash: instruments key hot caches
class Instrument:
    code: str
    name: str
    eng_name: str
    market: str  # KOSPI, KOSDAQ or INDEX
    base: int  # level prices wander around, in price units
    shares: int
    sector: str
    par: int
    listed: date
    kospi200: bool = False
    group: str = "ST"  # KRX security group: ST share, EF ETF, EN ETN (the master files' 그룹코드)
    halted: bool = False  # trading halt (거래정지)
    managed: bool = False  # administrative issue (관리종목)

    @property
    def is_index(self) -> bool:
        return self.market == "INDEX"


# code, name, English name, market, base price, listed shares, sector
WELL_KNOWN: tuple[tuple[str, str, str, str, int, int, str], ...] = (
    ("005930", "삼성전자", "Samsung Electronics", "KOSPI", 72_000, 5_969_782_550, "전기전자"),
    ("000660", "SK하이닉스", "SK hynix", "KOSPI", 195_000, 728_002_365, "전기전자"),
    ("035420", "NAVER", "NAVER", "KOSPI", 190_000, 158_437_008, "서비스업"),
    ("035720", "카카오", "Kakao", "KOSPI", 42_000, 442_000_000, "서비스업"),
    ("051910", "LG화학", "LG Chem", "KOSPI", 310_000, 70_592_343, "화학"),
    ("005380", "현대차", "Hyundai Motor", "KOSPI", 215_000, 209_416_191, "운수장비"),
    ("068270", "셀트리온", "Celltrion", "KOSPI", 180_000, 216_000_000, "의약품"),
    ("207940", "삼성바이오로직스", "Samsung Biologics", "KOSPI", 820_000, 71_174_000, "의약품"),
    ("247540", "에코프로비엠", "EcoPro BM", "KOSDAQ", 160_000, 97_801_344, "일반전기전자"),
    ("091990", "셀트리온헬스케어", "Celltrion Healthcare", "KOSDAQ", 68_000, 160_000_000, "유통"),
    ("000270", "기아", "Kia", "KOSPI", 98_000, 397_672_632, "운수장비"),
    ("105560", "KB금융", "KB Financial Group", "KOSPI", 78_000, 393_528_423, "금융업"),
    ("055550", "신한지주", "Shinhan Financial Group", "KOSPI", 48_000, 509_393_214, "금융업"),
    ("373220", "LG에너지솔루션", "LG Energy Solution", "KOSPI", 360_000, 234_000_000, "전기전자"),
    ("006400", "삼성SDI", "Samsung SDI", "KOSPI", 280_000, 68_764_530, "전기전자"),
    ("086520", "에코프로", "EcoPro", "KOSDAQ", 90_000, 133_138_340, "일반전기전자"),
    ("012330", "현대모비스", "Hyundai Mobis", "KOSPI", 230_000, 93_097_000, "운수장비"),
    ("028260", "삼성물산", "Samsung C&T", "KOSPI", 130_000, 169_976_544, "유통업"),
    ("196170", "알테오젠", "Alteogen", "KOSDAQ", 300_000, 53_000_000, "제약"),
)
# Exchange-traded products and KONEX shares: quoted like stocks and listed in the master files, but kept
# out of `stocks` so the seeded accounts and listings stay as they were.
# code, name, English name, market, base price, listed shares, group
EXTRAS: tuple[tuple[str, str, str, str, int, int, str], ...] = (
    ("069500", "KODEX 200", "KODEX 200", "KOSPI", 36_000, 180_000_000, "EF"),
    ("102110", "TIGER 200", "TIGER 200", "KOSPI", 36_000, 90_000_000, "EF"),
    ("122630", "KODEX 레버리지", "KODEX Leverage", "KOSPI", 18_000, 200_000_000, "EF"),
    ("102780", "KODEX 삼성그룹", "KODEX Samsung Group", "KOSPI", 9_000, 40_000_000, "EF"),
    ("580011", "삼성 레버리지 WTI원유 선물 ETN", "Samsung Leverage WTI Crude Oil Futures ETN", "KOSPI", 4_000,
     20_000_000, "EN"),
    ("217910", "에스와이패널", "SY Panel", "KONEX", 5_000, 20_000_000, "ST"),
    ("092590", "럭스피아", "Luxpia", "KONEX", 1_500, 10_000_000, "ST"),
)
INDICES: tuple[tuple[str, str, int, int], ...] = (  # code, name, base (0.01 points), daily volume (thousand shares)
    ("0001", "KOSPI", 265_000, 420_000),
    ("1001", "KOSDAQ", 85_000, 900_000),
    ("2001", "KOSPI200", 35_000, 90_000),
)

_FIRST = (("대한", "Daehan"), ("한국", "Hanguk"), ("동방", "Dongbang"), ("세진", "Sejin"), ("태영", "Taeyoung"),
          ("우진", "Woojin"), ("성원", "Sungwon"), ("삼일", "Samil"), ("신흥", "Shinheung"), ("광명", "Gwangmyung"),
          ("동양", "Dongyang"), ("미래", "Mirae"), ("새한", "Saehan"), ("금호", "Kumho"), ("한솔", "Hansol"),
          ("영진", "Youngjin"), ("서한", "Seohan"), ("진성", "Jinsung"), ("유니", "Uni"), ("에이스", "Ace"),
          ("하나", "Hana"), ("제일", "Jeil"), ("동아", "Donga"), ("조광", "Chokwang"), ("코리아", "Korea"),
          ("대원", "Daewon"), ("한빛", "Hanbit"), ("청담", "Cheongdam"), ("누리", "Nuri"), ("아이", "I"),
          ("케이", "K"), ("에스", "S"), ("다온", "Daon"), ("나노", "Nano"), ("세원", "Sewon"), ("일진", "Iljin"),
          ("보성", "Bosung"), ("화신", "Hwashin"), ("경동", "Kyungdong"), ("선진", "Sunjin"))
_MIDDLE = (("", ""), ("텍", "Tek"), ("씨앤", "C&"), ("엠", "M"), ("원", "One"))
_SUFFIX = (("전자", "Electronics", "전기전자"), ("바이오", "Bio", "의약품"), ("제약", "Pharm", "의약품"),
           ("화학", "Chemical", "화학"), ("건설", "E&C", "건설업"), ("홀딩스", "Holdings", "금융업"),
           ("테크", "Tech", "IT 서비스"), ("에너지", "Energy", "전기가스업"), ("소재", "Materials", "화학"),
           ("산업", "Industrial", "기계"), ("금속", "Metal", "철강금속"), ("식품", "Foods", "음식료품"),
           ("로직스", "Logis", "운수창고업"), ("시스템", "Systems", "IT 서비스"), ("반도체", "Semicon", "반도체"),
           ("정밀", "Precision", "기계"), ("물산", "Corp", "유통업"), ("통신", "Telecom", "통신업"),
           ("게임즈", "Games", "디지털컨텐츠"), ("엔터", "Entertainment", "오락·문화"),
           ("중공업", "Heavy Industries", "운수장비"), ("모터스", "Motors", "운수장비"))
_CODE_LETTERS = "ABCDEFGHJKLMNPQRSTVWXYZ"


class Universe:
    """Stocks and indices by code; built once per seed."""

    def __init__(self, seed: int, size: int = 2500) -> None:
        self.seed = seed
        self.stocks: dict[str, Instrument] = {}
        self.extras: dict[str, Instrument] = {}  # ETFs, ETNs, KONEX shares (see EXTRAS)
        self._master: dict[str, bytes] = {}
        self._master_lock = threading.Lock()
        for code, name, eng, market, base, shares, sector in WELL_KNOWN:
            self.stocks[code] = Instrument(code, name, eng, market, base, shares, sector,
                                           par=100 if code == "005930" else 5000, listed=date(1975, 6, 11),
                                           kospi200=market == "KOSPI")
        rng = random.Random(f"universe:{seed}")
        names = {i.name for i in self.stocks.values()}
        while len(self.stocks) < size:
            inst = _generated(rng, len(self.stocks))
            if inst.code in self.stocks or inst.name in names:
                continue
            self.stocks[inst.code] = inst
            names.add(inst.name)
        for code, name, eng, market, base, shares, group in EXTRAS:
            self.extras[code] = Instrument(code, name, eng, market, base, shares, "", 5000 if group == "ST" else 0,
                                           date(2015, 3, 2), group=group)
        self.indices = {code: Instrument(code, name, name, "INDEX", base, volume * 1000, "", 0, date(1980, 1, 4))
                        for code, name, base, volume in INDICES}

    def stock(self, code: str) -> Instrument | None:
        return self.stocks.get(code) or self.extras.get(code)

    def listed(self) -> list[Instrument]:
        """Everything the master files list: stocks, then ETFs/ETNs and KONEX shares."""
        return [*self.stocks.values(), *self.extras.values()]

    def master_zip(self, name: str) -> bytes | None:
        """kospi_code.mst.zip / kosdaq_code.mst.zip / konex_code.mst.zip, as KIS publishes them."""
        from shared.sim.master_files import master_zip

        with self._master_lock:
            if name not in self._master:
                data = master_zip(self, name)
                if data is None:
                    return None
                self._master[name] = data
            return self._master[name]

    def index(self, code: str) -> Instrument | None:
        return self.indices.get(code)

    def listing(self) -> list[dict[str, str]]:
        return [{"code": i.code, "name": i.name, "market": i.market} for i in self.stocks.values()]


def _generated(rng: random.Random, n: int) -> Instrument:
    if rng.random() < 0.02:
        code = f"{rng.randrange(1, 999):04d}{rng.choice(_CODE_LETTERS)}0"
    else:
        code = f"{rng.randrange(1, 99_000):05d}0"
    first, middle, suffix = rng.choice(_FIRST), rng.choice(_MIDDLE), rng.choice(_SUFFIX)
    name = first[0] + middle[0] + suffix[0]
    eng = f"{first[1]}{middle[1]} {suffix[1]}".strip()
    market = "KOSPI" if rng.random() < 0.38 else "KOSDAQ"
    base = round_to_tick(int(min(900_000, max(600, math.exp(rng.gauss(math.log(14_000), 1.0))))))
    shares = int(min(600_000_000, max(3_000_000, math.exp(rng.gauss(math.log(25_000_000), 1.0)))))
    first_year = 1996 if market == "KOSDAQ" else 1975
    span = (date(2024, 12, 1) - date(first_year, 1, 2)).days
    listed = date(first_year, 1, 2) + timedelta(days=rng.randrange(0, span))
    par = rng.choice((100, 200, 500, 500, 1000, 5000))
    flag = zlib.crc32(code.encode()) % 100  # about 1% halted and 2% administrative issues
    return Instrument(code, name, eng, market, base, shares, suffix[2], par, listed,
                      kospi200=market == "KOSPI" and shares > 100_000_000 and n % 3 == 0,
                      halted=flag == 7, managed=flag in (11, 13))
