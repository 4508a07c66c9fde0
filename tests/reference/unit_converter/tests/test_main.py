import pytest
from main import convert


def test_km_to_m():
    assert convert(2, "km", "m") == 2000


def test_boiling_point():
    assert convert(100, "c", "f") == 212


def test_unknown_unit():
    with pytest.raises(ValueError):
        convert(1, "km", "parsec")
