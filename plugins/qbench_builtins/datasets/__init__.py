"""Built-in datasets (see shared data guide): each finds, obtains, verifies, prepares and caches its data.

The class modules are light (numpy, torch and friends are imported inside ``prepare()``).
"""

from __future__ import annotations

import qbench

from .brown_char import BrownChar
from .digits_rows import DigitsRows
from .fsdd import Fsdd
from .pydoc_char import PydocChar


@qbench.hookimpl
def qbench_register_datasets() -> list[type]:
    return [PydocChar, BrownChar, Fsdd, DigitsRows]
