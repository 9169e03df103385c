"""rnn, gru and lstm keep their numbers BIT-IDENTICAL across refactors of the stack, on any x86-64 CPU.

The trainings run in the portable numerics mode (qbench.numerics: ATen, MKL, oneDNN and OpenBLAS
pinned to their AVX2 code paths before torch loads), in one child process started with the pins,
so the pinned values hold on every x86-64 CPU with AVX2 and FMA whatever its vector extensions
(docs/numerics.md: how that was checked across two CPUs). Where the mode cannot hold (another
architecture, a CPU without AVX2) the test skips and says why: pinned last bits there would test the
machine, not qbench. A change in any hexadecimal digit means stored reproduction runs would no
longer be reproducible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qbench.numerics import PORTABLE, machine_problems, pinned_environment, problems

SHORT = {"epochs": 1, "batch": 8, "bptt": 20, "max_steps": 6, "eval_tokens": 600, "hardware_tokens": 50}
CELLS = {"rnn": {}, "gru": {"batch_norm": True}, "lstm": {"layers": 2}}
QUANTIZERS = {"ternary": {"stochastic": True}, "exponential": {}, "binary": {"stochastic": True}}
ROOT = Path(__file__).resolve().parents[1]

#: float.hex() of the metrics and first-epoch training loss, in the portable numerics mode
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
        "train_bpc": "0x1.b0b779a8e829dp+2",
        "train_loss": "0x1.2befb55555555p+2",
        "valid_bpc": "0x1.bda354c2aaefbp+2"
    }
}


def measure(cache: str) -> dict[str, dict[str, str]]:
    """float.hex() of the metrics and first-epoch training loss of every pinned case (run in the child)."""
    import torch

    import qbench
    from qbench.training import train_and_evaluate

    torch.set_num_threads(1)
    data = qbench.create("dataset", "pydoc-char").prepare(cache)
    out = {}
    for key in sorted(PINNED):
        cell_name, quantizer_name = key.split("/")
        cell = qbench.create("cell", cell_name, hidden=12, **CELLS[cell_name])
        quantizer = qbench.create("quantizer", quantizer_name, **QUANTIZERS[quantizer_name])
        result = train_and_evaluate(cell, quantizer, data, SHORT, seed=3)
        got = {k: float(v).hex() for k, v in sorted(result.metrics.items())}
        got["train_loss"] = float(result.curve[0]["train_loss"]).hex()
        out[key] = got
    return out


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    why_not = machine_problems(PORTABLE)
    if why_not:
        pytest.skip(f"the pinned values hold in the portable numerics mode only, which this machine cannot give: "
                    f"{'; '.join(why_not)}")
    cache = str(tmp_path_factory.mktemp("cache"))
    if not problems(PORTABLE):  # this process is pinned already (started with the pins)
        return measure(cache)
    env = {**os.environ, **pinned_environment(PORTABLE), "PYTHONPATH": str(ROOT)}
    code = ("import json, sys; from tests.test_cells_pinned import measure; "
            "print(json.dumps(measure(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, cache], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, f"the pinned trainings failed in their child process:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(PINNED))
def test_short_training_is_bit_identical_to_main(measured, key):
    assert measured[key] == PINNED[key], f"{key}: expected {PINNED[key]}, got {measured[key]}"
