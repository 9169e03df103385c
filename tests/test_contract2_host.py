"""Contract 2, part 2, at registration: declared metrics, owned columns, Param defaults,
hook functions without the marker, and a broken plugin listed as broken by ``qbench plugins``."""

from __future__ import annotations

import types

import pytest

import qbench
from qbench import Metric, PluginError
from qbench.columns import HOST_COLUMNS
from qbench.host import UnmarkedHookWarning, get_host
from qbench.metrics import MetricSet
from qbench.protocol import primary_metric, selection_metric, trivial_protocol


def plugin(name: str, **hooks: object) -> types.SimpleNamespace:
    """A plugin object whose hooks return the given classes."""
    namespace = types.SimpleNamespace(__name__=name)
    for hook, classes in hooks.items():
        def impl(classes: object = classes) -> object:
            return list(classes)  # type: ignore[call-overload]

        setattr(namespace, f"qbench_register_{hook}", qbench.hookimpl(specname=f"qbench_register_{hook}")(impl))
    return namespace


def backend(name: str, columns: dict[str, str], **extra: object) -> type:
    return type(name.title().replace("-", ""), (qbench.HardwareBackend,),
                {"name": name, "description": "d", "columns": columns, **extra})


def test_a_backend_claiming_a_host_column_is_refused_naming_both():
    claim = plugin("claimer", hardware=[backend("claimer", {"weight_bytes": "min"})])
    with pytest.raises(PluginError, match=r"hardware 'claimer' of plugin 'claimer'.*'weight_bytes'.*the host"):
        get_host((claim,), load_entry_points=False)


def test_a_backend_claiming_another_backends_column_is_refused_naming_both_plugins():
    claim = plugin("thief", hardware=[backend("thief", {"energy_pj_per_token": "min"})])
    with pytest.raises(PluginError) as info:
        get_host((claim,), load_entry_points=False)
    message = str(info.value)
    assert "'energy_pj_per_token'" in message
    assert "hardware 'energy' of plugin 'qbench_builtins.hardware'" in message
    assert "hardware 'thief' of plugin 'thief'" in message


def test_a_backend_claiming_a_metric_column_is_refused():
    claim = plugin("metricthief", hardware=[backend("metricthief", {"test_bpc": "min"})])
    with pytest.raises(PluginError, match="declared metrics"):
        get_host((claim,), load_entry_points=False)


def test_cost_axes_must_be_declared_columns_with_a_direction():
    bad = plugin("axes", hardware=[backend("axes", {"axes_pj": ""}, cost_axes=("axes_pj",))])
    with pytest.raises(PluginError, match="cost axes"):
        get_host((bad,), load_entry_points=False)


def test_host_columns_include_every_base_record_key():
    from qbench.case_runner import base_record
    from qbench.matrix import Case, Spec

    spec = Spec("x")
    case = Case("id", "m", spec, spec, spec, (), 0, {})
    assert set(base_record(case)) <= HOST_COLUMNS


class WrongDefault(qbench.Quantizer):
    name = "wrong-default"
    description = "d"
    params = {"bits": qbench.Param(int, "four", "bits per weight")}

    def quantize(self, w, ctx):  # pragma: no cover - never trained
        return w


def test_a_param_default_of_the_wrong_type_is_a_registration_error_naming_everything():
    with pytest.raises(PluginError, match=r"plugin 'defaults'.*quantizer 'wrong-default'.*'bits'"):
        get_host((plugin("defaults", quantizers=[WrongDefault]),), load_entry_points=False)


def test_hook_named_functions_without_the_marker_are_warned_about():
    module = types.ModuleType("unmarked")

    def qbench_register_quantizers():  # pragma: no cover - never called: that is the point
        return []

    module.qbench_register_quantizers = qbench_register_quantizers  # type: ignore[attr-defined]
    with pytest.warns(UnmarkedHookWarning, match="qbench_register_quantizers has no @qbench.hookimpl"):
        get_host((module,), load_entry_points=False)


def test_a_broken_plugin_is_listed_as_broken_while_the_others_work():
    broken = plugin("broken", quantizers=[WrongDefault])
    host = get_host((broken,), load_entry_points=False, keep_broken=True)
    by_name = {info.name: info for info in host.plugins}
    assert "wrong-default" in by_name["broken"].broken and by_name["broken"].components == {}
    assert "ternary" in host.registry("quantizer") and "wrong-default" not in host.registry("quantizer")
    with pytest.raises(PluginError, match="wrong-default"):  # every other command still refuses
        get_host((broken,), load_entry_points=False)


class BadMetrics(qbench.Dataset):
    name = "bad-metrics"
    description = "d"
    task = "sequence-labelling"
    metrics = (Metric("acc", "accuracy"), Metric("bits", "bits"))  # no primary


@pytest.mark.parametrize(("metrics", "message"), [
    ((Metric("acc", "accuracy"),), "exactly one metric must be primary"),
    ((Metric("acc", "accuracy", primary=True, splits=("test", "valid", "train")),), "train split"),
    ((Metric("acc", "perplexity", primary=True), Metric("acc", "bits")), "distinct"),
    ((Metric("x", "flops", primary=True),), "measure 'flops'"),
])
def test_a_bad_metric_declaration_is_a_registration_error(metrics, message):
    cls = type("Bad", (BadMetrics,), {"metrics": metrics})
    with pytest.raises(PluginError, match=rf"plugin 'metrics'.*dataset 'bad-metrics'.*{message}"):
        get_host((plugin("metrics", datasets=[cls]),), load_entry_points=False)


def test_an_unknown_task_is_a_registration_error():
    cls = type("Bad", (BadMetrics,), {"task": "forecasting", "metrics": None})
    with pytest.raises(PluginError, match="task 'forecasting'"):
        get_host((plugin("metrics", datasets=[cls]),), load_entry_points=False)


def test_primary_and_selection_come_from_the_declaration_not_from_names():
    declared = MetricSet("sequence-labelling", (Metric("zz", "accuracy", primary=True),
                                                Metric("aa", "bits", selects=True, splits=("test", "valid"))))
    record = declared.as_record()
    directions = declared.columns()
    assert primary_metric(directions, record) == "test_zz"  # not the first test_ column (test_aa)
    assert selection_metric("test_zz", directions, trivial_protocol([0]), record) == "valid_aa"
    # a record made before datasets declared metrics: its first test_ column
    assert primary_metric({"valid_x": "min", "test_b": "min", "test_a": "max"}) == "test_a"


class Reference(qbench.Quantizer):
    name = "reference"
    description = "a plugin's own full-precision reference"
    baseline = True

    def quantize(self, w, ctx):  # pragma: no cover - never trained
        return w


def test_the_default_baseline_is_the_quantizer_that_declares_itself_the_baseline():
    from qbench.matrix import parse_matrix

    host = get_host((plugin("reference", quantizers=[Reference]),), load_entry_points=False)
    raw = {"name": "m", "quantizer": [{"name": "ternary"}, {"name": "reference"}], "cell": [{"name": "rnn"}],
           "dataset": [{"name": "pydoc-char"}]}
    assert parse_matrix(raw, "m.toml", "0", host).protocol.baseline == "reference"
    raw["quantizer"].append({"name": "float"})  # two declare it: the first by name
    assert parse_matrix(raw, "m.toml", "0", host).protocol.baseline == "float"
    assert parse_matrix({**raw, "baseline": "ternary"}, "m.toml", "0", host).protocol.baseline == "ternary"


def test_in_process_plugins_are_refused_by_executors_whose_workers_cannot_load_them():
    from qbench.errors import UsageError
    from qbench.executors import get_executor
    from qbench.testing import registered_plugins

    with registered_plugins(plugin("notebook", quantizers=[Reference]), load_entry_points=False) as host:
        get_executor("local", 1, host=host).close()  # the driver's own process has it
        for name, workers in (("local", 2), ("dask", 1)):
            with pytest.raises(UsageError, match=r"plugin\(s\) notebook are registered in this process only"):
                get_executor(name, workers, host=host)


def test_a_store_of_another_schema_version_is_refused_with_one_message(tmp_path):
    from qbench.errors import UsageError
    from qbench.store import Store

    with Store(tmp_path / "qbench.sqlite") as store:
        store.set_meta("schema_version", "99")
    with pytest.raises(UsageError, match="store schema version '99', this qbench reads version 1; upgrade qbench"):
        Store(tmp_path / "qbench.sqlite")
