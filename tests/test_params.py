from __future__ import annotations

import pytest

from qbench import Param, ParamError
from qbench.params import resolve_params

DECLARED = {
    "hidden": Param(int, 128, "units", min=1),
    "rate": Param(float, 0.5, "a rate", min=0.0, max=1.0),
    "mode": Param(str, "a", "mode", choices=("a", "b")),
    "flag": Param(bool, False),
    "path": Param(str),
}


def test_defaults_filled_and_int_accepted_for_float():
    resolved = resolve_params("cell 'x'", DECLARED, {"path": "p", "rate": 1})
    assert resolved == {"hidden": 128, "rate": 1.0, "mode": "a", "flag": False, "path": "p"}
    assert isinstance(resolved["rate"], float)


@pytest.mark.parametrize(
    "given, fragment",
    [
        ({"path": "p", "hiden": 3}, "unknown parameter 'hiden' (did you mean 'hidden'?)"),
        ({"path": "p", "hidden": "3"}, "parameter 'hidden' must be int, got '3'"),
        ({"path": "p", "hidden": True}, "parameter 'hidden' must be int, got True"),
        ({"path": "p", "hidden": 0}, "parameter 'hidden' must be >= 1"),
        ({"path": "p", "rate": 2.0}, "parameter 'rate' must be <= 1.0"),
        ({"path": "p", "mode": "c"}, "parameter 'mode' must be one of 'a', 'b'; got 'c'"),
        ({"path": "p", "flag": 1}, "parameter 'flag' must be bool"),
        ({}, "missing required parameter 'path'"),
    ],
)
def test_bad_values_are_named(given, fragment):
    with pytest.raises(ParamError) as info:
        resolve_params("cell 'x'", DECLARED, given)
    assert fragment in str(info.value)
    assert str(info.value).startswith("cell 'x'")
