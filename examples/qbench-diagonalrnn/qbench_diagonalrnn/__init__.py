"""Example qbench plugin (a declared cell): ``diagonal-rnn``, a declared cell h' = tanh(W x + b + u * h).

Install it with ``pip install ./examples/qbench-diagonalrnn``; qbench finds it through the
``qbench`` entry point in ``pyproject.toml``. ``plugin.py`` declares the cell's tensors (the
recurrent weight ``u`` is a vector, one weight per unit) and its step; the host provides
quantization, seeded initialisation, clipping, the export and the operation counts, so the
``energy`` backend prices it from the declaration. ``tests/`` runs qbench's cell kit
(``qbench.testing.cells.CellContract``) on it. docs/plugins.md shows ``plugin.py`` verbatim.
"""
