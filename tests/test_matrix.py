"""Matrix files: validation errors name file, key and value; expansion is pure and stable."""

from __future__ import annotations

import pickle
import textwrap

import pytest

from qbench import MatrixError
from qbench.matrix import expand, load_matrix

from .fakes import fake_host

GOOD = """
name = "demo"
seeds = [0, 1]

[[quantizer]]
name = "fake-quant"
stochastic = [false, true]

[[cell]]
name = "fake-cell"
hidden = 16

[[dataset]]
name = "fake-data"

[[hardware]]
name = "fake-hw"

[train]
epochs = 1
lr = 0.01
"""


@pytest.fixture(scope="module")
def host():
    return fake_host()


def write(tmp_path, text, name="m.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_expansion_is_the_product_with_stable_ids(tmp_path, host):
    matrix = load_matrix(write(tmp_path, GOOD), host)
    cases = expand(matrix)
    assert len(cases) == 4
    assert [(c.quantizer.label, c.seed) for c in cases] == [
        ("fake-quant(stochastic=false)", 0), ("fake-quant(stochastic=false)", 1),
        ("fake-quant(stochastic=true)", 0), ("fake-quant(stochastic=true)", 1),
    ]
    assert cases[0].cell.params == {"hidden": 16}
    assert cases[0].quantizer.params == {"stochastic": False, "bits": 2}
    assert cases[0].train["epochs"] == 1 and cases[0].train["batch"] == 32
    assert len({c.case_id for c in cases}) == 4
    again = expand(load_matrix(write(tmp_path, GOOD.replace('"demo"', '"renamed"'), "n.toml"), host))
    assert [c.case_id for c in again] == [c.case_id for c in cases]  # ids ignore the matrix name
    changed = expand(load_matrix(write(tmp_path, GOOD.replace("lr = 0.01", "lr = 0.02"), "o.toml"), host))
    assert not {c.case_id for c in changed} & {c.case_id for c in cases}
    assert pickle.loads(pickle.dumps(cases[0])) == cases[0]


def test_excludes_remove_matching_cases(tmp_path, host):
    text = GOOD + '\n[[exclude]]\nquantizer = { name = "fake-quant", stochastic = true }\nseed = 1\n'
    cases = expand(load_matrix(write(tmp_path, text), host))
    assert len(cases) == 3
    assert not any(c.quantizer.params["stochastic"] and c.seed == 1 for c in cases)


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (lambda t: t.replace("[train]", "[train"), ["malformed TOML"]),
        (lambda t: t.replace('name = "fake-cell"', 'name = "fake-cel"'),
         ["[[cell]] #1", "unknown cell 'fake-cel'", "Did you mean 'fake-cell'?"]),
        (lambda t: t.replace("hidden = 16", "hiden = 16"), ["[[cell]] #1", "unknown parameter 'hiden'", "'hidden'"]),
        (lambda t: t.replace("hidden = 16", 'hidden = "16"'), ["parameter 'hidden' must be int, got '16'"]),
        (lambda t: t.replace("hidden = 16", "hidden = []"), ["parameter 'hidden' is an empty list"]),
        (lambda t: t.replace("seeds = [0, 1]", "seeds = []"), ["'seeds' must be a non-empty list"]),
        (lambda t: t.replace("epochs = 1", "epochs = 0"), ["[train]", "'epochs' must be >= 1"]),
        (lambda t: t.replace("lr = 0.01", "lr = 0.01\nlearning_rate = 1"), ["unknown parameter 'learning_rate'"]),
        (lambda t: t.replace("[[dataset]]\nname = \"fake-data\"\n", ""), ["missing axis [[dataset]]"]),
        (lambda t: "quantizers = 3\n" + t, ["unknown top-level key 'quantizers'", "did you mean 'quantizer'"]),
        (lambda t: t.replace('[[quantizer]]\nname = "fake-quant"', "quantizer = []\n[[quantizer2]]\nname = 'x'"),
         ["unknown top-level key"]),
        (lambda t: t + '\n[[exclude]]\ncell = "rnn"\n', ["[[exclude]] #1", "cell 'rnn' is not in the matrix"]),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, host, edit, fragments):
    path = write(tmp_path, edit(GOOD))
    with pytest.raises(MatrixError) as info:
        load_matrix(path, host)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_empty_axis_is_an_error(tmp_path, host):
    text = GOOD.replace('[[quantizer]]\nname = "fake-quant"\nstochastic = [false, true]\n', "quantizer = []\n")
    with pytest.raises(MatrixError, match=r"axis \[\[quantizer\]\] is empty"):
        load_matrix(write(tmp_path, text), host)


def test_missing_file_is_a_usage_error(tmp_path, host):
    with pytest.raises(MatrixError, match="matrix file not found"):
        load_matrix(tmp_path / "nope.toml", host)


def test_duplicate_entries_are_rejected(tmp_path, host):
    text = GOOD + '\n[[quantizer]]\nname = "fake-quant"\n'
    with pytest.raises(MatrixError, match="lists fake-quant.* twice"):
        load_matrix(write(tmp_path, text), host)
