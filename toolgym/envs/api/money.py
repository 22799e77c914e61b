"""Money is kept in integer cents everywhere, so sums and replays compare exactly."""

from __future__ import annotations


def usd(cents: int) -> str:
    """``12345`` -> ``"$123.45"``; negative amounts get a leading minus.

    >>> usd(123456), usd(-5)
    ('$1,234.56', '-$0.05')
    """
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(int(cents)), 100)
    return f"{sign}${dollars:,}.{rest:02d}"
