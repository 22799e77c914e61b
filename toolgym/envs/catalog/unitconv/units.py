"""Units, their dimensions and factors to the SI base unit; temperatures are affine."""

from __future__ import annotations

# unit -> (dimension, factor to base, offset to base): base = value * factor + offset
UNITS: dict[str, tuple[str, float, float]] = {
    # length (base: metre)
    "m": ("length", 1.0, 0.0),
    "km": ("length", 1000.0, 0.0),
    "cm": ("length", 0.01, 0.0),
    "mm": ("length", 0.001, 0.0),
    "mi": ("length", 1609.344, 0.0),
    "yd": ("length", 0.9144, 0.0),
    "ft": ("length", 0.3048, 0.0),
    "in": ("length", 0.0254, 0.0),
    "nmi": ("length", 1852.0, 0.0),
    # mass (base: kilogram)
    "kg": ("mass", 1.0, 0.0),
    "g": ("mass", 0.001, 0.0),
    "t": ("mass", 1000.0, 0.0),
    "lb": ("mass", 0.45359237, 0.0),
    "oz": ("mass", 0.028349523125, 0.0),
    # time (base: second)
    "s": ("time", 1.0, 0.0),
    "min": ("time", 60.0, 0.0),
    "h": ("time", 3600.0, 0.0),
    "day": ("time", 86400.0, 0.0),
    # volume (base: litre)
    "l": ("volume", 1.0, 0.0),
    "ml": ("volume", 0.001, 0.0),
    "gal": ("volume", 3.785411784, 0.0),
    "qt": ("volume", 0.946352946, 0.0),
    "cup": ("volume", 0.2365882365, 0.0),
    # speed (base: metre per second)
    "m/s": ("speed", 1.0, 0.0),
    "km/h": ("speed", 1000.0 / 3600.0, 0.0),
    "mph": ("speed", 1609.344 / 3600.0, 0.0),
    "kn": ("speed", 1852.0 / 3600.0, 0.0),
    # temperature (base: kelvin)
    "K": ("temperature", 1.0, 0.0),
    "C": ("temperature", 1.0, 273.15),
    "F": ("temperature", 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
}

DIMENSIONS: tuple[str, ...] = tuple(sorted({d for d, _, _ in UNITS.values()}))

PRECISION = 4
"""Decimals kept by every conversion and calculation, so replays compare exactly."""


def convert_value(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``, rounded to ``PRECISION`` decimals.

    Raises:
        ValueError: an unknown unit, or units of different dimensions.
    """
    for unit in (from_unit, to_unit):
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}; call list_units to see the known ones")
    dim_a, factor_a, offset_a = UNITS[from_unit]
    dim_b, factor_b, offset_b = UNITS[to_unit]
    if dim_a != dim_b:
        raise ValueError(f"cannot convert {dim_a} ({from_unit}) to {dim_b} ({to_unit})")
    base = value * factor_a + offset_a
    return round((base - offset_b) / factor_b, PRECISION)


def format_number(value: float) -> str:
    """How numbers appear in answers: the rounded value, without a trailing '.0'."""
    text = repr(round(float(value), PRECISION))
    return text[:-2] if text.endswith(".0") else text
