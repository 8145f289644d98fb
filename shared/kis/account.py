"""The account number split KIS wants (CANO + ACNT_PRDT_CD); never echoed anywhere."""

from __future__ import annotations

from shared.config import Secret
from shared.kis.errors import KISConfigError


def account_parts(account_no: Secret) -> tuple[str, str]:
    digits = account_no.get().replace("-", "")
    if len(digits) != 10 or not digits.isdigit():
        raise KISConfigError("KIS_ACCOUNT_NO is not set to 10 digits (8-digit account + 2-digit product)")
    return digits[:8], digits[8:]
