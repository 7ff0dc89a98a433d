import pint
import pytest

from concert_core.quantities import parse_quantity, parse_unit, q, unit_symbol


@pytest.mark.parametrize(
    ("unit", "symbol"),
    [(q.mm, "mm"), (q.deg, "deg"), (q.ms, "ms"), (q.keV, "keV"), (q.mA, "mA"),
     (q.hour, "h"), (q.V, "V"), (q.mm / q.s, "mm / s"), (q.count, "count"),
     (q.pixel, "pixel"), (q.percent, "%"), (q.fraction, "frac"), (q.dimensionless, "")],
)
def test_symbol_round_trip(unit, symbol):
    assert unit_symbol(unit) == symbol
    assert parse_unit(symbol) == unit


def test_symbol_of_quantity_and_string():
    assert unit_symbol(3 * q.um) == "µm"
    assert unit_symbol("millimeter") == "mm"


def test_parse_quantity():
    assert parse_quantity("10 mm") == 10 * q.mm
    assert parse_quantity(2.5) == 2.5 * q.dimensionless
    assert parse_quantity("1.5 keV").to(q.eV).magnitude == pytest.approx(1500)


def test_unknown_unit_is_refused():
    with pytest.raises(pint.UndefinedUnitError):
        parse_unit("furlongs_per_fortnightz")


def test_one_registry_everywhere():
    assert pint.get_application_registry().get() is q
    assert (1 * q.mm + 1 * q.um).units == q.mm
