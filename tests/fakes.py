"""Small fake components for host-level tests (no torch needed to declare them)."""

from __future__ import annotations

import qbench


class FakeQuantizer(qbench.Quantizer):
    name = "fake-quant"
    description = "a fake quantizer"
    params = {
        "stochastic": qbench.Param(bool, False, "draw at random"),
        "bits": qbench.Param(int, 2, "bits", min=1),
    }

    def quantize(self, w, ctx):
        return w

    def bits_per_weight(self):
        return self.bits


class FakeCell(qbench.Cell):
    name = "fake-cell"
    description = "a fake cell"
    params = {"hidden": qbench.Param(int, 8, "units", min=1)}


class FakeDataset(qbench.Dataset):
    name = "fake-data"
    description = "a fake dataset"
    params = {"path": qbench.Param(str, "", "where")}


class FakeBackend(qbench.HardwareBackend):
    name = "fake-hw"
    description = "a fake backend"
    params = {"node": qbench.Param(int, 45, "nm")}
    columns = {"fake_pj": "min"}


class FakePlugin:
    __name__ = "fakes"

    @qbench.hookimpl
    def qbench_register_quantizers(self):
        return [FakeQuantizer]

    @qbench.hookimpl
    def qbench_register_cells(self):
        return [FakeCell]

    @qbench.hookimpl
    def qbench_register_datasets(self):
        return [FakeDataset]

    @qbench.hookimpl
    def qbench_register_hardware(self):
        return [FakeBackend]


def fake_host():
    return qbench.get_host((FakePlugin(),), load_entry_points=False)


#: The source of a one-quantizer plugin module, written into fake distributions by the host tests
HALVE_PLUGIN = """
import qbench

class Halve(qbench.Quantizer):
    name = "halve"
    description = "multiplies by one half"
    scheme = "custom"
    params = {"factor": qbench.Param(float, 0.5, "the factor")}

    def quantize(self, w, ctx):
        return w * self.factor

    def bits_per_weight(self):
        return 32

@qbench.hookimpl
def qbench_register_quantizers():
    return [Halve]
"""


class ClippedState(qbench.Quantizer):
    """An outside author's activation quantizer (PACT-like): uniform k-bit codes of the hidden state
    clipped to [-1, 1] (tanh's range); no weight role, the host's straight-through estimator."""

    name = "clipped-state"
    description = "k-bit uniform hidden state on [-1, 1]"
    scheme = "fixed"
    params = {"act_bits": qbench.Param(int, 4, "state bits", min=2, max=16)}

    def applies_to(self, role):
        return role == "hidden"

    def quantize(self, w, ctx):
        import torch

        levels = 2 ** (self.act_bits - 1) - 1
        return torch.round(w.clamp(-1, 1) * levels) / levels

    def bits_per_weight(self):
        return 32.0  # never used for a weight: it quantizes no weight role

    def role_bits(self, role):
        return float(self.act_bits) if role == "hidden" else 32.0
