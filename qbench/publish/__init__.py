"""Publishing results beyond one run folder: submission bundles, merged leaderboards, the static site.

:mod:`qbench.publish.bundle` packs and reads bundles, :mod:`qbench.publish.merge` puts the
comparable records of several bundles into one leaderboard, :mod:`qbench.publish.site` writes
the browsable pages. Like :mod:`qbench.leaderboard`, these import pandas; ``import qbench`` never
imports them.
"""
