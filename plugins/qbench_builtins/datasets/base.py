"""Shared parameters and behaviour of the built-in datasets (light: no numpy at import)."""

from __future__ import annotations

from typing import Any, ClassVar

import qbench
from qbench import Param

#: Bump when a preparation changes, so that old cached arrays are not served for the new recipe.
PREP_VERSION = 1

LM_PARAMS: dict[str, Param] = {
    "max_chars": Param(int, 0, "cap on training characters after the split (0: all); valid/test unchanged",
                       min=0),
}
PATH_PARAM: dict[str, Param] = {
    "path": Param(str, "", "your copy of the data (file or folder); empty: the cache, then obtain it"),
}
CLASSIFICATION_PARAMS: dict[str, Param] = {
    "split_seed": Param(int, 0, "seed of the stratified split (independent of the case seed)", min=0),
    "valid_fraction": Param(float, 0.1, "share of each class held out for validation", min=0.0, max=0.5),
    "test_fraction": Param(float, 0.2, "share of each class held out for test", min=0.0, max=0.5),
}


class CharLMDataset(qbench.Dataset):
    """Base of the character-level language-modelling datasets (metric: bits per character)."""

    task: ClassVar[str] = "language-model"
    max_chars: int


class SequenceClassificationDataset(qbench.Dataset):
    """Base of the sequence-classification datasets (metric: accuracy)."""

    task: ClassVar[str] = "classification"
    split_seed: int
    valid_fraction: float
    test_fraction: float

    def validate(self) -> None:
        if self.valid_fraction <= 0 or self.test_fraction <= 0:
            self._reject("valid_fraction and test_fraction must both be above 0 (each split needs examples)")
        if self.valid_fraction + self.test_fraction >= 0.9:
            self._reject("valid_fraction + test_fraction must stay below 0.9 to leave a training split")

    def split_key(self) -> dict[str, Any]:
        return {"split_seed": self.split_seed, "valid_fraction": self.valid_fraction,
                "test_fraction": self.test_fraction}
