"""Building a leaderboard's tables from records: a pure function of the records and the stored protocol.

The records become a :class:`~qbench.leaderboard.compute.frame.RunsFrame` (``frame``, or
``storeread`` straight from a store), the protocol picks each method's runs (``fairness``), and
the seed statistics, the paired comparisons and the trends are computed (``tables``, ``stats``,
``trends``). Nothing here writes a file or imports the rendering or auditing packages beside it.
"""
