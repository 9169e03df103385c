"""Reading published leaderboards back: ``qbench validate`` (``validate``, ``recompute``, ``trends``),
``qbench compare`` (``compare``) and the published files as a source of records (``sources``).

May import the building and rendering packages (a published set is checked by rebuilding it).
"""
