"""Example qbench plugin (a learned quantizer): ``learned-binary``, binary weights times a learned scale.

Install it with ``pip install ./examples/qbench-learnedbinary``; qbench finds it through the
``qbench`` entry point in ``pyproject.toml``. ``plugin.py`` holds the quantizer (a learned
per-tensor state and its own gradient, written as a ``torch.autograd.Function``);
``tests/`` runs qbench's quantizer kit (``qbench.testing.quantizers.QuantizerContract``) on it.
docs/plugins.md shows ``plugin.py`` verbatim.
"""
