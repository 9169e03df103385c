"""rnn, gru and lstm keep their numbers BIT-IDENTICAL across refactors of the stack.

The values were recorded on main (commit acf7d63) before the cells were rewritten as declared
cells: same seeded initialisation, same stochastic draws, same fused kernel. A change in any
hexadecimal digit means stored reproduction runs would no longer be reproducible.
"""

from __future__ import annotations

import pytest

import qbench

torch = pytest.importorskip("torch")

from qbench.training import train_and_evaluate  # noqa: E402

SHORT = {"epochs": 1, "batch": 8, "bptt": 20, "max_steps": 6, "eval_tokens": 600, "hardware_tokens": 50}
CELLS = {"rnn": {}, "gru": {"batch_norm": True}, "lstm": {"layers": 2}}
QUANTIZERS = {"ternary": {"stochastic": True}, "exponential": {}, "binary": {"stochastic": True}}

#: float.hex() of the metrics and first-epoch training loss, recorded on main before the refactor
PINNED = {
    "gru/binary": {
        "test_bpc": "0x1.9e862360934cfp+2",
        "train_bpc": "0x1.b6413006e71fdp+2",
        "train_loss": "0x1.2fc6644444444p+2",
        "valid_bpc": "0x1.a48cbdb6d6191p+2"
    },
    "gru/exponential": {
        "test_bpc": "0x1.a83b034238f7cp+2",
        "train_bpc": "0x1.ad4be43f4b463p+2",
        "train_loss": "0x1.2990ccccccccdp+2",
        "valid_bpc": "0x1.abd5fdc98fc2dp+2"
    },
    "gru/ternary": {
        "test_bpc": "0x1.a91c894f05c7ap+2",
        "train_bpc": "0x1.ad5749f4253a0p+2",
        "train_loss": "0x1.2998b33333333p+2",
        "valid_bpc": "0x1.acdfc8a6a4d68p+2"
    },
    "lstm/binary": {
        "test_bpc": "0x1.b0e4fc2d3376bp+2",
        "train_bpc": "0x1.ae2591fa6ea94p+2",
        "train_loss": "0x1.2a27aeeeeeeefp+2",
        "valid_bpc": "0x1.b1ff91e79982bp+2"
    },
    "lstm/exponential": {
        "test_bpc": "0x1.aa270c383a6c2p+2",
        "train_bpc": "0x1.adac8a465b899p+2",
        "train_loss": "0x1.29d3caaaaaaabp+2",
        "valid_bpc": "0x1.adb129f91ff73p+2"
    },
    "lstm/ternary": {
        "test_bpc": "0x1.aba00bc02e93ap+2",
        "train_bpc": "0x1.ae22c7f0bd1a7p+2",
        "train_loss": "0x1.2a25c00000000p+2",
        "valid_bpc": "0x1.ae6046c877867p+2"
    },
    "rnn/binary": {
        "test_bpc": "0x1.b8a3c84d23eacp+2",
        "train_bpc": "0x1.bb4063a49fadep+2",
        "train_loss": "0x1.333d111111111p+2",
        "valid_bpc": "0x1.c2dcce4f704e3p+2"
    },
    "rnn/exponential": {
        "test_bpc": "0x1.a6a0cc2f133dep+2",
        "train_bpc": "0x1.b2612db063f58p+2",
        "train_loss": "0x1.2d16c88888889p+2",
        "valid_bpc": "0x1.b1317838aaf3ap+2"
    },
    "rnn/ternary": {
        "test_bpc": "0x1.a6ed07b046f68p+2",
        "train_bpc": "0x1.b0b77cbccf8cap+2",
        "train_loss": "0x1.2befb77777777p+2",
        "valid_bpc": "0x1.bda35511b8bbfp+2"
    }
}


@pytest.fixture(scope="module")
def pydoc_data(tmp_path_factory):
    return qbench.create("dataset", "pydoc-char").prepare(str(tmp_path_factory.mktemp("cache")))


@pytest.mark.parametrize("key", sorted(PINNED))
def test_short_training_is_bit_identical_to_main(pydoc_data, key):
    cell_name, quantizer_name = key.split("/")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cell = qbench.create("cell", cell_name, hidden=12, **CELLS[cell_name])
        quantizer = qbench.create("quantizer", quantizer_name, **QUANTIZERS[quantizer_name])
        result = train_and_evaluate(cell, quantizer, pydoc_data, SHORT, seed=3)
    finally:
        torch.set_num_threads(previous)
    got = {k: float(v).hex() for k, v in sorted(result.metrics.items())}
    got["train_loss"] = float(result.curve[0]["train_loss"]).hex()
    assert got == PINNED[key]
