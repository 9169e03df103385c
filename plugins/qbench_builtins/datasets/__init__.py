"""Built-in datasets (docs/data.md): each finds, obtains, verifies, prepares and caches its data.

The class modules are light (numpy is imported inside ``prepare()``).
"""

from __future__ import annotations

import qbench

from .adding import AddingProblem
from .brown_char import BrownChar
from .digits_rows import DigitsRows
from .fsdd import Fsdd
from .mnist_rows import MnistRows
from .ptb_char import PtbChar
from .pydoc_char import PydocChar
from .text8 import Text8


@qbench.hookimpl
def qbench_register_datasets() -> list[type]:
    return [PydocChar, PtbChar, BrownChar, Text8, Fsdd, DigitsRows, MnistRows, AddingProblem]
