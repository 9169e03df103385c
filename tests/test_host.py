"""The plugin host: built-ins, entry points one by one, and every way a plugin can be wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest

import qbench
from qbench import PluginError, UnknownComponentError
from qbench.host import BUILTIN_PLUGINS, get_host

from .fakes import HALVE_PLUGIN

PLUGIN_SOURCE = HALVE_PLUGIN


def test_builtins_registered_first_with_qbench_version():
    host = get_host(load_entry_points=False)
    names = [info.name for info in host.plugins]
    assert names == list(BUILTIN_PLUGINS)
    assert all(info.builtin and info.distribution == "qbench" for info in host.plugins)


def test_entry_point_plugin_is_registered_with_distribution_and_version(fake_distribution):
    fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": PLUGIN_SOURCE}, version="2.3")
    host = get_host()
    info = next(i for i in host.plugins if i.name == "acme")
    assert (info.distribution, info.version, info.builtin) == ("acme-quant", "2.3", False)
    assert info.components == {"quantizer": ["halve"]}
    entry = host.registry("quantizer").get("halve")
    assert (entry.plugin, entry.distribution, entry.version) == ("acme", "acme-quant", "2.3")
    assert qbench.create("quantizer", "halve", factor=0.25).factor == 0.25


def broken(host, name):
    """The message of the plugin ``name`` that the host left out (fails when it was not)."""
    info = next(i for i in host.plugins if i.name == name)
    assert info.broken and not info.components
    return info.broken


def test_import_failure_names_plugin_and_distribution(fake_distribution):
    fake_distribution("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin": "import not_a_module_xyz\n"})
    message = broken(get_host(), "broken")
    assert "error importing plugin 'broken'" in message
    assert "broken-dist 1.0" in message
    assert "not_a_module_xyz" in message
    assert "pip uninstall broken-dist" in message and "QBENCH_DISABLE_PLUGINS=broken" in message


def test_hookimpl_with_wrong_signature_is_rejected(fake_distribution):
    source = "import qbench\n@qbench.hookimpl\ndef qbench_register_cells(config):\n    return []\n"
    fake_distribution("sig-dist", {"sig": "sig_plugin"}, {"sig_plugin": source})
    message = broken(get_host(), "sig")
    assert "plugin 'sig'" in message and "config" in message and "take no arguments" in message


def test_misspelled_hook_is_caught_and_the_right_hook_named(fake_distribution):
    source = "import qbench\n@qbench.hookimpl\ndef qbench_register_quantizer():\n    return []\n"
    fake_distribution("typo-dist", {"typo": "typo_plugin"}, {"typo_plugin": source})
    message = broken(get_host(), "typo")
    assert "qbench_register_quantizer is not a qbench hook" in message
    assert "did you mean 'qbench_register_quantizers'?" in message


def test_two_plugins_claiming_one_name_both_register_and_the_bare_name_is_ambiguous(fake_distribution):
    fake_distribution("first-dist", {"first": "first_plugin"}, {"first_plugin": PLUGIN_SOURCE})
    fake_distribution("second-dist", {"second": "second_plugin"}, {"second_plugin": PLUGIN_SOURCE})
    host = get_host()
    with pytest.raises(qbench.UsageError) as info:
        host.create("quantizer", "halve")
    message = str(info.value)
    assert "'halve' is ambiguous" in message
    assert "'first-dist:halve'" in message and "'second-dist:halve'" in message
    assert host.registry("quantizer").get("second-dist:halve").plugin == "second"
    assert host.create("quantizer", "first-dist:halve", factor=0.25).factor == 0.25


def test_registration_must_return_component_classes(fake_distribution):
    source = "import qbench\n@qbench.hookimpl\ndef qbench_register_datasets():\n    return [object]\n"
    fake_distribution("odd-dist", {"odd": "odd_plugin"}, {"odd_plugin": source})
    message = broken(get_host(), "odd")
    assert "qbench_register_datasets returned <class 'object'>, which is not a subclass of qbench.Dataset" in message
    assert "return the class itself" in message


def test_an_instance_returned_instead_of_the_class_says_return_the_class(fake_distribution):
    source = PLUGIN_SOURCE.replace("return [Halve]", "return [Halve()]")
    fake_distribution("inst-dist", {"inst": "inst_plugin"}, {"inst_plugin": source})
    message = broken(get_host(), "inst")
    assert "returned <Halve halve>, which is not a subclass of qbench.Quantizer" in message
    assert "return the class itself" in message


def test_bad_component_name_is_rejected(fake_distribution):
    source = PLUGIN_SOURCE.replace('name = "halve"', 'name = "Halve Q"')
    fake_distribution("name-dist", {"named": "name_plugin"}, {"name_plugin": source})
    assert "lower case" in broken(get_host(), "named")


def test_unknown_component_suggests_a_name(fake_distribution):
    fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": PLUGIN_SOURCE})
    host = get_host()
    with pytest.raises(UnknownComponentError) as info:
        host.create("quantizer", "halv")
    assert "did you mean 'halve'" in str(info.value).lower()
    with pytest.raises(PluginError, match="unknown component kind"):
        host.registry("optimizer")


def test_registries_are_frozen_after_start_up():
    host = get_host(load_entry_points=False)
    with pytest.raises(PluginError, match="frozen"):
        host.registry("cell").add(qbench.Cell, "late")


def test_import_qbench_is_light():
    code = (
        "import sys, qbench, qbench.cli; qbench.cli.build_parser(); "
        "heavy = [m for m in ('torch', 'pandas', 'numpy', 'matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_quant_context_rejects_unknown_role():
    with pytest.raises(ValueError, match="role"):
        qbench.QuantContext("weights", 4, 4, False)
    assert qbench.QuantContext("recurrent", 8, 24, True).glorot_bound == pytest.approx((6 / 32) ** 0.5)
