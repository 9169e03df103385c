"""float64 forward of an exported model: the cell equations with the exported quantized weights.

This is the model the integer program approximates (docs/hardware.md check 4, and
``sim_max_abs_error``). Gate order and equations are torch's: rnn ``h' = tanh(Wx x + bx + Wh h
+ bh)``; gru (r, z, n) ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``;
lstm (i, f, g, o) ``c' = f c + i g``, ``h' = o tanh(c')``. Folded batch norm multiplies each
layer's input by ``input_scale`` and adds ``input_shift``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from qbench.export import ExportedLayer, ExportedModel


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def layer_inputs(model: ExportedModel, inputs: np.ndarray) -> np.ndarray:
    """Layer 0's float input [T, B, n] from ids [T, B] (one-hot, embedding) or features."""
    if model.input_kind == "one-hot":
        return np.eye(model.layers[0].input_size)[np.asarray(inputs, dtype=np.int64)]
    if model.input_kind == "embedding":
        assert model.embedding is not None
        return np.asarray(model.embedding, dtype=np.float64)[np.asarray(inputs, dtype=np.int64)]
    return np.asarray(inputs, dtype=np.float64)


def run_layer(layer: ExportedLayer, x: np.ndarray) -> np.ndarray:
    """All steps of one layer: x [T, B, n] -> h [T, B, h]."""
    if layer.input_scale is not None:
        shift = 0.0 if layer.input_shift is None else layer.input_shift
        x = x * layer.input_scale + shift
    hs = layer.hidden_size
    wx, wh = layer.w_input.values, layer.w_recurrent.values
    zeros = np.zeros(wx.shape[0])
    bx = zeros if layer.b_input is None else np.asarray(layer.b_input.values).reshape(-1)
    bh = zeros if layer.b_recurrent is None else np.asarray(layer.b_recurrent.values).reshape(-1)
    xf = x @ wx.T + bx
    steps, batch = x.shape[0], x.shape[1]
    h = np.zeros((batch, hs))
    c = np.zeros((batch, hs))
    out = np.empty((steps, batch, hs))
    for t in range(steps):
        hf = h @ wh.T + bh
        if layer.cell == "rnn":
            h = np.tanh(xf[t] + hf)
        elif layer.cell == "gru":
            rz = _sigmoid(xf[t, :, : 2 * hs] + hf[:, : 2 * hs])
            r, z = rz[:, :hs], rz[:, hs:]
            n = np.tanh(xf[t, :, 2 * hs :] + r * hf[:, 2 * hs :])
            h = (1.0 - z) * n + z * h
        else:
            pre = xf[t] + hf
            i, f, o = _sigmoid(pre[:, :hs]), _sigmoid(pre[:, hs : 2 * hs]), _sigmoid(pre[:, 3 * hs :])
            g = np.tanh(pre[:, 2 * hs : 3 * hs])
            c = f * c + i * g
            h = o * np.tanh(c)
        out[t] = h
    return out


def forward(model: ExportedModel, inputs: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Logits [N, C]: every step of one stream (lengths None, batch 1) or each sequence's last step."""
    x = layer_inputs(model, inputs)
    for layer in model.layers:
        x = run_layer(layer, x)
    if lengths is None:
        final = x[:, 0, :]
    else:
        final = x[np.asarray(lengths, dtype=np.int64) - 1, np.arange(x.shape[1])]
    return final @ np.asarray(model.output_weight, dtype=np.float64).T + np.asarray(
        model.output_bias
    ).reshape(-1)
