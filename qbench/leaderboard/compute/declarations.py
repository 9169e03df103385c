"""What the components declared that a leaderboard shows, read from the records alone.

A leaderboard is a pure function of its records (and the stored protocol): the baseline
quantizer, the backends' detail columns (those their ``headline`` leaves out of the Markdown),
leading columns and cost axes come from what the case runner wrote into each record
(:data:`qbench.record.DECLARATIONS`, :data:`qbench.record.COST_AXES`), never from the plugins
installed where the leaderboard is rebuilt. So ``qbench leaderboard`` and ``qbench validate``
give the same answer on any machine.

Records stored before the runner wrote declarations (the committed results among them) carry
none. For the built-in components the facts are taken from :data:`LEGACY_BASELINES` and
:data:`LEGACY_BACKENDS`, the built-ins' own declarations written out (a test keeps the two
equal); a component of such a record that the table does not know is named in a note on the
page, and its columns are all shown, never silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from qbench import record as R

#: Built-in quantizers that declare ``baseline = True``: the paired comparisons' reference.
LEGACY_BASELINES = ("float",)
#: The built-in backends' declarations (``HardwareBackend.headline`` / ``leading_columns`` /
#: ``cost_axes``), as the leaderboard reads them: the columns the headline leaves out.
LEGACY_BACKENDS: dict[str, dict[str, list[str]]] = {
    "c-kernel": {
        "detail_columns": [
            "c_outputs_checked", "c_stack_bytes", "c_weight_bytes", "c_ns_per_token", "c_vs_simulator",
            "m3_flash_bytes", "m3_ram_bytes", "m3_exact", "m3_instructions_per_token", "m3_status",
        ],
        "leading_columns": ["c_exact", "c_flash_bytes", "c_ram_bytes", "c_ns_per_token"],
        "cost_axes": [],
    },
    "energy": {
        "detail_columns": [
            "energy_pj_per_sequence", "energy_arith_pj_per_token", "energy_memory_pj_per_token",
            "energy_weights_pj_per_token", "energy_state_pj_per_token", "energy_output_pj_per_token",
            "energy_add_pj_per_token", "energy_mult_pj_per_token", "energy_shift_pj_per_token",
            "weight_bytes_sparse", "weight_bytes_entropy", "output_weight_bytes", "state_bytes", "table_bytes",
            "bops_per_token", "latency_us_per_token", "energy_table", "memory_placement", "datapath",
        ],
        "leading_columns": [],
        "cost_axes": ["energy_pj_per_token"],
    },
    "shift-add": {
        "detail_columns": [
            "sim_exact", "sim_metric", "float_metric", "float64_metric", "skips", "scale_mults", "table_lookups",
            "output_mults", "output_adds", "output_shifts", "acc_bits_max", "adder_bits_max", "acc_bits_bound",
            "overflows", "saturations", "sim_weight_kinds", "sim_formats", "op_widths", "sim_requantized",
            "sim_output_requantized", "sim_reference_exact", "sim_reference_limit", "sim_tokens",
        ],
        "leading_columns": ["mults", "adds", "shifts", "sim_exact", "sim_max_abs_error"],
        "cost_axes": [],
    },
}  # fmt: skip


@dataclass(frozen=True)
class Declared:
    """The components' declarations gathered over every record of a leaderboard."""

    #: the baseline quantizer (the first by name that declares itself one; "" when none does)
    baseline: str = ""
    detail_columns: frozenset[str] = frozenset()
    leading_columns: tuple[str, ...] = ()
    cost_axes: tuple[str, ...] = ()
    #: quantizers of old records that cannot be said to be a baseline or not (not built in)
    unknown_quantizers: tuple[str, ...] = ()
    #: backends of old records whose declarations are unknown (not built in)
    unknown_backends: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


def signature(declarations: Any, quantizer: Any, hardware: Any, status: Any, cost_axes: Any) -> Any:
    """What one record contributes: its declarations (text or object), or for a record stored
    before declarations were written, ``(quantizer, backend labels, status, has cost axes)``.
    Many records share one signature, so a caller gathers them in a set."""
    if declarations is not None:
        return declarations if isinstance(declarations, str) else json.dumps(declarations, sort_keys=True)
    if isinstance(hardware, str):
        hardware = json.loads(hardware) if hardware.startswith("[") else [hardware]
    labels = tuple(str(h) for h in hardware) if isinstance(hardware, (list, tuple)) else ()
    return (str(quantizer), labels, str(status), cost_axes is not None)


def backend_name(label: str) -> str:
    """``shift-add(rounding="floor")`` -> ``shift-add`` (a component label is its name, then parameters)."""
    return label.split("(", 1)[0]


def gather(signatures: Iterable[Any], record_cost_axes: Iterable[str]) -> Declared:
    """Every record's declarations (distinct :func:`signature` values) as one :class:`Declared`."""
    baselines: set[str] = set()
    unknown_quantizers: set[str] = set()
    unknown_backends: set[str] = set()
    detail: set[str] = set()
    leading: dict[tuple[str, str], list[str]] = {}
    legacy_axes: dict[str, list[str]] = {}
    for found in signatures:
        if isinstance(found, tuple):
            quantizer, labels, status, has_axes = found
            if quantizer in LEGACY_BASELINES:
                baselines.add(quantizer)
            elif status == "ok":
                unknown_quantizers.add(quantizer)
            for label in labels:
                name = backend_name(label)
                table = LEGACY_BACKENDS.get(name)
                if table is None:
                    if status == "ok":
                        unknown_backends.add(name)
                    continue
                detail.update(table["detail_columns"])
                leading[(name, "")] = table["leading_columns"]
                if not has_axes:
                    legacy_axes[name] = table["cost_axes"]
            continue
        declared = json.loads(found) if isinstance(found, str) else found
        quantizer = declared.get(R.QUANTIZER) or {}
        if quantizer.get("baseline") is True:
            baselines.add(str(quantizer.get("name", "")))
        for label, backend in (declared.get(R.HARDWARE) or {}).items():
            detail.update(backend.get("detail_columns", ()))
            leading[(str(backend.get("backend", label)), label)] = list(backend.get("leading_columns", ()))
    axes = list(dict.fromkeys([*record_cost_axes, *(a for name in sorted(legacy_axes) for a in legacy_axes[name])]))
    notes = []
    if unknown_backends:
        names = ", ".join(sorted(unknown_backends))
        notes.append(f"Records of the hardware backend(s) {names} were stored by an earlier qbench without the "
                     "backend's declarations: every column of theirs is shown in the Markdown, among the other "
                     "costs in alphabetical order.")  # fmt: skip
    return Declared(
        baseline=min(baselines) if baselines else "",
        detail_columns=frozenset(detail),
        leading_columns=tuple(dict.fromkeys(c for key in sorted(leading) for c in leading[key])),
        cost_axes=tuple(axes),
        unknown_quantizers=tuple(sorted(unknown_quantizers)),
        unknown_backends=tuple(sorted(unknown_backends)),
        notes=notes,
    )


def no_baseline_note(declared: Declared) -> list[str]:
    """The note a page carries when no baseline is known because old records could not say."""
    if declared.baseline or not declared.unknown_quantizers:
        return []
    names = ", ".join(declared.unknown_quantizers)
    return [f"Records of the quantizer(s) {names} were stored by an earlier qbench without saying whether the "
            "quantizer is the full-precision baseline: no paired comparison is made."]  # fmt: skip
