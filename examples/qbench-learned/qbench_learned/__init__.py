"""Example qbench plugin for contract 2: ``learned-binary`` (a learned scale) and ``diagonal-rnn`` (a declared cell)."""
