"""UnitConv: unit conversion, arithmetic and a named memory (the smallest shipped environment)."""
