"""Every registered dataset that is available here passes the conformance kit on its real data."""

from __future__ import annotations

import pytest

import qbench
from qbench.testing.datasets import DatasetContract, check_dataset

REGISTERED = sorted(qbench.get_host(load_entry_points=False).registry("dataset"))


@pytest.fixture(scope="module")
def dataset_cache(data_cache):
    return data_cache


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_dataset_conforms(name, data_cache):
    dataset = qbench.create("dataset", name)
    state = dataset.availability(str(data_cache))
    if state.startswith("missing"):
        pytest.skip(f"{name} is not available on this machine: {state}")
    check_dataset(dataset, data_cache)


def test_builtin_datasets_are_registered():
    assert {"pydoc-char", "digits-rows"} <= set(REGISTERED)


class TestPydocCharContract(DatasetContract):
    @pytest.fixture
    def dataset(self):
        return qbench.create("dataset", "pydoc-char", max_chars=5000)


class TestDigitsRowsContract(DatasetContract):
    @pytest.fixture
    def dataset(self):
        return qbench.create("dataset", "digits-rows", split_seed=3)
