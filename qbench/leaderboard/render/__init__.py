"""Writing built tables out: Markdown, HTML, CSV, JSON and plots.

Imports :mod:`qbench.leaderboard.compute` (the tables it writes), never the auditing package.
"""
