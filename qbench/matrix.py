"""Matrix files: read a TOML benchmark matrix, validate it, expand it into cases.

Expansion is a pure function: the product of the axes (component grids x seeds), minus the
excludes, in a stable order, with case ids that depend only on what the case computes. Every
error names the file, the key and what was expected.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qbench.components import OUTPUT_ROLE, component_label
from qbench.errors import MatrixError, PluginError, UsageError
from qbench.numerics import DEFAULT_MODE, MODES
from qbench.protocol import TUNE_AXES, Protocol, SeedRule
from qbench.roles import QUANTIZER_ROLES, composed_label, role_refusal
from qbench.trainconfig import TRAIN_PARAMS, resolve_limits, resolve_train

AXES = ("quantizer", "cell", "dataset", "hardware")
#: the roles every case hands its quantizer: the output layer only where ``roles.output`` assigns it
CASE_ROLES = tuple(role for role in QUANTIZER_ROLES if role != OUTPUT_ROLE)
TOP_LEVEL_KEYS = {"name", "description", "seeds", "train", "limits", "numerics", "exclude", "tune", "baseline",
                  "compare", *AXES}
SEED_RULE_KEYS = ("min", "max", "precision", "first")
TUNE_KEYS = (*TUNE_AXES, "seeds", "metric", "extend")
COMPARE_KEYS = ("margin", "claim")
#: Grid extensions beyond an edge when a matrix tunes and does not say ([tune] extend): two steps
#: find an optimum up to a factor of the grid's ratio squared beyond it, for at most two tuning
#: cases (per tuning seed) more per method at an edge; 0 only flags the edge.
DEFAULT_EXTEND = 2
REQUIRED_AXES = ("quantizer", "cell", "dataset")
EXCLUDE_KEYS = ("quantizer", "cell", "dataset", "seed")
MAX_SEED = 2**63 - 1
#: The most seeds a matrix may list (a plain list or a seed rule's max): more is a typo, not a benchmark.
MAX_SEEDS = 1000


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class Spec:
    """A component as a case uses it: its name and resolved parameters (defaults filled in)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    #: parameters the matrix set explicitly (the label shows only these)
    given: tuple[str, ...] = ()
    #: a quantizer's per-role quantizers ``((role, spec), ...)`` in role order (``roles.ROLE`` in the
    #: matrix); empty: this quantizer quantizes every role, as a plain ``[[quantizer]]``
    roles: tuple[tuple[str, Spec], ...] = ()

    @property
    def label(self) -> str:
        own = component_label(self.name, {k: self.params[k] for k in self.given if k in self.params})
        if not self.roles:
            return own
        return composed_label(own, {role: spec.label for role, spec in self.roles})

    @property
    def identity(self) -> str:
        """What records and the protocol call this component: its name, or a composition's label
        (a float default with a quantized hidden state is not the float baseline)."""
        return self.label if self.roles else self.name

    def as_dict(self) -> dict[str, Any]:
        # "roles" only when given: a plain [[quantizer]] keeps the payload, hence the case id, it always had
        if not self.roles:
            return {"name": self.name, "params": dict(self.params)}
        return {"name": self.name, "params": dict(self.params),
                "roles": {role: spec.as_dict() for role, spec in self.roles}}  # fmt: skip

    def __reduce__(self) -> tuple[Any, ...]:  # mappingproxy-free pickling for process pools / Dask
        return (Spec, (self.name, dict(self.params), tuple(self.given), tuple(self.roles)))


@dataclass(frozen=True)
class Case:
    """One unit of work: a quantizer, a cell, a dataset, a seed, the training recipe, the backends."""

    case_id: str
    matrix: str
    quantizer: Spec
    cell: Spec
    dataset: Spec
    hardware: tuple[Spec, ...]
    seed: int
    train: Mapping[str, Any]
    #: the grid point of the protocol this case trains ({} without a grid); not part of the id
    tuned: Mapping[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> tuple[str, str, str]:
        """What a leaderboard row aggregates: (dataset, cell, quantizer) labels, tuned values left out."""
        return (self.dataset.label, self.cell.label, self.quantizer.label)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            Case,
            (self.case_id, self.matrix, self.quantizer, self.cell, self.dataset, self.hardware, self.seed,
             dict(self.train), dict(self.tuned)),
        )


@dataclass(frozen=True)
class Matrix:
    """A validated matrix: component grids per axis, seeds, training recipe, excludes."""

    name: str
    path: str
    digest: str
    description: str
    quantizers: tuple[Spec, ...]
    cells: tuple[Spec, ...]
    datasets: tuple[Spec, ...]
    hardware: tuple[Spec, ...]
    seeds: tuple[int, ...]
    train: Mapping[str, Any]
    excludes: tuple[Mapping[str, Any], ...] = ()
    #: ``[limits] case_timeout``: seconds a case may run (None: no limit). Not part of any case id.
    case_timeout: float | None = None
    #: how the cases are chosen (:mod:`qbench.protocol`); left out, the plain protocol of ``seeds``
    protocol: Protocol = None  # type: ignore[assignment]  # None is replaced in __post_init__
    #: ``[numerics] mode``: ``native`` or ``portable`` (:mod:`qbench.numerics`). Not part of any case id.
    numerics: str = "native"

    def __post_init__(self) -> None:
        if self.protocol is None:  # a matrix built by hand: every listed seed, no grid, no seed rule
            object.__setattr__(self, "protocol", Protocol(seeds=tuple(self.seeds)))


def case_id_for(quantizer: Spec, cell: Spec, dataset: Spec, hardware: tuple[Spec, ...], seed: int,
                train: Mapping[str, Any]) -> str:
    """Stable id: a hash of everything that determines the case's result (not the matrix name)."""
    payload = {
        "quantizer": quantizer.as_dict(),
        "cell": cell.as_dict(),
        "dataset": dataset.as_dict(),
        "hardware": [h.as_dict() for h in hardware],
        "seed": seed,
        "train": dict(train),
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:16]


def _grid(where: str, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Expand list-valued parameters of one axis entry into a grid (in the file's key order)."""
    keys = [k for k in entry if k != "name"]
    choices = []
    for key in keys:
        value = entry[key]
        if isinstance(value, list):
            if not value:
                raise MatrixError(f"{where}: parameter {key!r} is an empty list; give at least one value")
            choices.append(value)
        else:
            choices.append([value])
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]


def _resolve_axis(where: str, kind: str, entries: Any, host: Any,
                  built: list[tuple[Spec, Any]] | None = None) -> tuple[Spec, ...]:  # fmt: skip
    """The axis's specs, defaults filled in; ``built`` collects each (spec, the component built to check
    it), so that a later check of the same components does not build them again."""
    if not isinstance(entries, list) or not entries:
        raise MatrixError(
            f"{where}: axis [[{kind}]] is empty or not a list of tables; add at least one "
            f'[[{kind}]] table with a name, e.g.\n  [[{kind}]]\n  name = "..."'
        )
    registry = host.registry(kind)
    specs: list[Spec] = []
    probed: list[str] = []
    for index, entry in enumerate(entries):
        at = f"{where}: [[{kind}]] #{index + 1}"
        if not isinstance(entry, dict):
            raise MatrixError(f"{at} must be a table with a 'name' key, got {entry!r}")
        name = entry.get("name")
        if not isinstance(name, str):
            raise MatrixError(f"{at} needs a 'name' string (one of: {', '.join(registry) or 'none'})")
        try:  # a bare name must mean one component; ``ORIGIN:name`` picks one of several
            cls = registry.get(name).cls
        except UsageError as exc:
            raise MatrixError(f"{at}: {exc}") from None
        role_options: list[list[tuple[str, Spec]]] = []
        if kind == "quantizer" and "roles" in entry and "roles" not in getattr(cls, "params", {}):
            entry = {k: v for k, v in entry.items() if k != "roles"}
            role_options = _role_options(at, entries[index]["roles"], registry, probed)
        for params in _grid(at, entry):
            try:
                component = cls(**params)
            except UsageError as exc:
                raise MatrixError(f"{at}: {exc}") from None
            if kind == "quantizer":  # the default quantizer never reaches the output layer
                probed += _probe_quantizer(at, registry.get(name), component, CASE_ROLES)
            for roles in itertools.product(*role_options):
                specs.append(Spec(name, dict(component.config), tuple(params), tuple(roles)))
                if built is not None:
                    built.append((specs[-1], component))
    if probed:  # every quantizer that fails the probe, in one message
        raise PluginError(" ".join(probed) if len(probed) == 1 else
                          " ".join(f"({i}) {p}" for i, p in enumerate(probed, 1)))  # fmt: skip
    seen: set[str] = set()
    for spec in specs:
        key = _canonical(spec.as_dict())
        if key in seen:
            raise MatrixError(f"{where}: [[{kind}]] lists {spec.label} twice; remove the duplicate")
        seen.add(key)
    return tuple(specs)


def _role_options(at: str, roles: Any, registry: Any, probed: list[str]) -> list[list[tuple[str, Spec]]]:
    """``roles.ROLE = {name = ..., ...}`` (one quantizer) or ``[{...}, {...}]`` (an axis) per role:
    each role's choices, each checked to quantize its role (and probed like any quantizer: ``probed``
    collects the failures)."""
    example = 'roles.hidden = { name = "lsq", bits = 4, hidden = true }'
    if not isinstance(roles, dict) or not roles:
        raise MatrixError(f"{at}: roles must be a table of a quantizer per role, e.g.\n  {example}")
    options: list[list[tuple[str, Spec]]] = []
    for role in QUANTIZER_ROLES:  # role order: the case id does not depend on the file's key order
        if role not in roles:
            continue
        choices = roles[role]
        where = f"{at}: roles.{role}"
        tables = choices if isinstance(choices, list) else [choices]
        if not tables:
            raise MatrixError(f"{where} is an empty list; give at least one quantizer table")
        found: list[tuple[str, Spec]] = []
        for table in tables:
            if not isinstance(table, dict) or not isinstance(table.get("name"), str):
                raise MatrixError(f"{where} must be a table with a quantizer 'name' (or a list of them), e.g.\n"
                                  f"  {example}")  # fmt: skip
            if isinstance(table.get("roles"), dict):
                raise MatrixError(f"{where}: a role's quantizer cannot have roles of its own")
            try:  # a bare name must mean one component; ``ORIGIN:name`` picks one of several
                entry = registry.get(table["name"])
            except UsageError as exc:
                raise MatrixError(f"{where}: {exc}") from None
            cls = entry.cls
            for params in _grid(where, table):
                try:
                    component = cls(**params)
                except UsageError as exc:
                    raise MatrixError(f"{where}: {exc}") from None
                refusal = role_refusal(component, role)
                if refusal is not None:
                    raise MatrixError(f"{where}: {refusal}")
                probed += _probe_quantizer(where, entry, component, (*CASE_ROLES, role))
                found.append((role, Spec(table["name"], dict(component.config), tuple(params))))
        options.append(found)
    unknown = sorted(set(roles) - set(QUANTIZER_ROLES))
    if unknown:
        raise MatrixError(f"{at}: roles has unknown role(s) {', '.join(map(repr, unknown))}; the roles are "
                          f"{', '.join(QUANTIZER_ROLES)}")  # fmt: skip
    return options


def build_quantizer(spec: Spec, host: Any) -> Any:
    """The quantizer a case uses: the component of ``spec``, composed with its roles' quantizers."""
    registry = host.registry("quantizer")
    default = registry.get(spec.name).cls(**spec.params)
    if not spec.roles:
        return default
    from qbench.roles import RoleQuantizers

    return RoleQuantizers(default, {role: registry.get(r.name).cls(**r.params) for role, r in spec.roles})


def _probe_quantizer(at: str, entry: Any, quantizer: Any, roles: tuple[str, ...]) -> list[str]:
    """Quantize small tensors of every role of ``roles`` the quantizer takes, before any case runs: a
    wrong shape or dtype would otherwise fail inside each case's training (``mat2 must be a matrix``)."""
    from qbench.quantprobe import probe_problems

    problems = probe_problems(quantizer, dict.fromkeys(roles))
    if not problems:
        return []
    return [f"{at}: quantizer {quantizer.label!r} of {entry.described()}: {'; '.join(problems)}; fix the plugin's "
            "quantize(), or leave this quantizer out of the matrix"]


def load_matrix(path: str | Path, host: Any = None) -> Matrix:
    """Read, validate and resolve a matrix file (raises :class:`MatrixError`, a usage error) with
    ``host``'s registries (default: a host of the installed plugins)."""
    from qbench.host import get_host

    host = host if host is not None else get_host()
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise MatrixError(f"{path}: matrix file not found; check the path (see matrices/ for examples)") from None
    except OSError as exc:
        raise MatrixError(f"{path}: cannot read the matrix file: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise MatrixError(f"{path}: not a UTF-8 text file; a matrix is a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"{path}: malformed TOML: {exc}") from None
    return parse_matrix(raw, str(path), hashlib.sha256(raw_bytes).hexdigest(), host)


def parse_matrix(raw: Mapping[str, Any], where: str, digest: str, host: Any) -> Matrix:
    """Validate an already-parsed matrix mapping (``where`` names it in errors)."""
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(k, sorted(TOP_LEVEL_KEYS), n=1) for k in unknown]
        detail = "; ".join(
            f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in zip(unknown, hints, strict=True)
        )
        raise MatrixError(f"{where}: unknown top-level key {detail}; known keys: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    name = raw.get("name", Path(where).stem)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise MatrixError(f"{where}: 'name' must be a non-empty string without '/', got {name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise MatrixError(f"{where}: 'description' must be a string")
    seeds, rule = _parse_seeds(where, raw.get("seeds", [0]))
    for axis in REQUIRED_AXES:
        if axis not in raw:
            raise MatrixError(f'{where}: missing axis [[{axis}]]; add at least one, e.g. [[{axis}]] name = "..."')
    train_table = raw.get("train", {})
    if not isinstance(train_table, dict):
        raise MatrixError(f"{where}: [train] must be a table")
    for key, value in train_table.items():
        if isinstance(value, list):
            raise MatrixError(
                f"{where}: [train] {key} is a list; a [train] value is one value. To tune it per method, "
                f"write it under [tune] instead:\n  [tune]\n  train.{key} = {json.dumps(value)}"
            )
    try:
        train = resolve_train(train_table)
    except UsageError as exc:
        raise MatrixError(f"{where}: {exc}") from None
    datasets: list[tuple[Spec, Any]] = []
    axes = {axis: _resolve_axis(where, axis, raw[axis], host, datasets if axis == "dataset" else None)
            for axis in REQUIRED_AXES}  # fmt: skip
    hardware = _resolve_axis(where, "hardware", raw["hardware"], host) if "hardware" in raw else ()
    excludes = _check_excludes(where, raw.get("exclude", []), axes, seeds)
    limits = resolve_limits(where, raw.get("limits", {}))
    numerics = _parse_numerics(where, raw.get("numerics", {}))
    baseline = raw.get("baseline", declared_baseline(host, [spec.identity for spec in axes["quantizer"]]))
    if "baseline" in raw and (not isinstance(baseline, str) or not baseline):
        raise MatrixError(f"{where}: 'baseline' must be a quantizer name, got {baseline!r}")
    quantizer_names = sorted({spec.identity for spec in axes["quantizer"]} | {spec.name for spec in axes["quantizer"]})
    if "baseline" in raw and baseline not in quantizer_names:
        # a baseline no case runs would leave the paired comparison empty while the pages name it
        raise MatrixError(f"{where}: baseline = {baseline!r} is not a quantizer of this matrix; use one of: "
                          f"{', '.join(quantizer_names)}")  # fmt: skip
    grid, tuning_seeds, metric = _parse_tune(where, raw.get("tune", {}), axes, train, host)
    _check_selection_metric(where, metric, datasets)
    extend = _parse_extend(where, raw.get("tune", {}), grid)
    margins, claim = _parse_compare(where, raw.get("compare", {}), datasets)
    _check_training_needs(where, datasets, train, grid)
    if tuning_seeds > (rule.min if rule else len(seeds)):
        raise MatrixError(f"{where}: [tune] seeds = {tuning_seeds} is more than the {rule.min if rule else len(seeds)} "
                          "evaluation seeds every method gets; tune on fewer seeds")  # fmt: skip
    if rule is not None and rule.min < 2:
        raise MatrixError(f"{where}: [seeds] min = {rule.min}: Stein's two-stage seed rule estimates the spread of "
                          "the paired differences from the first min seeds, so min must be at least 2")  # fmt: skip
    protocol = Protocol(seeds=tuple(seeds), rule=rule, grid=grid, tuning_seeds=tuning_seeds, select=metric,
                        baseline=baseline, margins=margins, claim=claim, extend=extend)  # fmt: skip
    return Matrix(
        name=name, path=where, digest=digest, description=description,
        quantizers=axes["quantizer"], cells=axes["cell"], datasets=axes["dataset"], hardware=hardware,
        seeds=tuple(seeds), train=train, excludes=excludes, case_timeout=limits["case_timeout"], protocol=protocol,
        numerics=numerics,
    )


def _parse_numerics(where: str, given: Any) -> str:
    """``[numerics] mode = "native" | "portable"`` (the kernels cases may use; see qbench.numerics)."""
    example = '[numerics] mode = "portable"'
    if not isinstance(given, dict):
        raise MatrixError(f"{where}: [numerics] must be a table, e.g. {example}")
    unknown = sorted(set(given) - {"mode"})
    if unknown:
        raise MatrixError(f"{where}: [numerics] has no key {unknown[0]!r}; the only key is 'mode', e.g. {example}")
    mode = given.get("mode", DEFAULT_MODE)
    if mode not in MODES:
        raise MatrixError(f"{where}: [numerics] mode = {mode!r} is not a mode; use one of: "
                          f"{', '.join(repr(m) for m in MODES)}")  # fmt: skip
    return mode


def _check_training_needs(where: str, datasets: list[tuple[Spec, Any]], train: Mapping[str, Any],
                          grid: tuple[tuple[str, tuple[Any, ...]], ...]) -> None:  # fmt: skip
    """Each dataset against the training recipe, with every combination of tuned [train] values
    (:meth:`qbench.Dataset.check_train`): a dataset too small for one batch is refused now, not
    after the cases that precede it have run."""
    tuned = [(key.removeprefix("train."), values) for key, values in grid if key.startswith("train.")]
    recipes = [{**train, **dict(zip([k for k, _ in tuned], combo, strict=True))}
               for combo in itertools.product(*[values for _, values in tuned])]  # fmt: skip
    for spec, dataset in datasets:
        for recipe in recipes:
            try:
                dataset.check_train(recipe)
            except UsageError as exc:
                raise MatrixError(f"{where}: [[dataset]] {spec.label}: {exc}") from None


def _check_selection_metric(where: str, metric: str, datasets: list[tuple[Spec, Any]]) -> None:
    """``[tune] metric``: a validation column every dataset of the matrix reports (a typo would
    choose nothing and run no evaluation seed)."""
    from qbench.metrics import MetricError, MetricSet

    if not metric:
        return
    offered: set[str] | None = None
    for _spec, dataset in datasets:
        try:
            columns = {c for c in MetricSet.of(dataset).columns() if c.startswith("valid_")}
        except MetricError:
            continue  # the dataset's own check reports its declaration
        offered = columns if offered is None else offered & columns
    if offered is not None and metric not in offered:
        choices = ", ".join(sorted(offered)) or "none (the datasets share no validation metric)"
        raise MatrixError(f"{where}: [tune] metric = {metric!r} is not a validation metric every dataset of the "
                          f"matrix reports; use one of: {choices}")  # fmt: skip


def declared_baseline(host: Any, quantizers: Iterable[str]) -> str:
    """The quantizer that declares itself the full-precision baseline (``baseline = True``): one of
    ``quantizers`` (names as the matrix spells them, bare or qualified; the first by name) if any,
    else any installed one (first by name), else "" (no baseline: the leaderboards say there is no
    paired comparison)."""
    registry = host.registry("quantizer")
    in_matrix = []
    for name in set(quantizers):
        try:
            if getattr(registry.get(name).cls, "baseline", False) is True:
                in_matrix.append(name)
        except UsageError:  # a name of another host (records read back): not this one's to judge
            continue
    declared = [name for name, entry in registry.items() if getattr(entry.cls, "baseline", False) is True]
    return (sorted(in_matrix) or declared or [""])[0]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_seeds(where: str, seeds: Any) -> tuple[list[int], SeedRule | None]:
    """``seeds`` is a list of seeds, one seed, or a rule ``{min, max, precision[, first]}``."""
    if isinstance(seeds, dict):
        unknown = sorted(set(seeds) - set(SEED_RULE_KEYS))
        if unknown:
            raise MatrixError(f"{where}: [seeds] has unknown key(s) {', '.join(map(repr, unknown))}; a seed rule "
                              f"takes {', '.join(SEED_RULE_KEYS)}")  # fmt: skip
        low: Any = seeds.get("min")
        high: Any = seeds.get("max")
        first: Any = seeds.get("first", 0)
        precision = seeds.get("precision")
        if not (_is_int(low) and _is_int(high) and 1 <= low <= high <= MAX_SEEDS):
            raise MatrixError(f"{where}: [seeds] needs integers 1 <= min <= max <= {MAX_SEEDS}, got min={low!r}, "
                              f"max={high!r}")  # fmt: skip
        if not (isinstance(precision, (int, float)) and not isinstance(precision, bool)
                and math.isfinite(precision) and precision > 0):  # fmt: skip
            raise MatrixError(f"{where}: [seeds] precision must be a positive number (the target half-width of "
                              f"the paired difference's 95% interval, in the primary metric's unit), "
                              f"got {precision!r}")  # fmt: skip
        if not (_is_int(first) and 0 <= first <= MAX_SEED - high):
            raise MatrixError(f"{where}: [seeds] first must be an integer from 0 to 2^63-1-max, got {first!r}")
        return list(range(first, first + high)), SeedRule(low, high, float(precision))
    if _is_int(seeds):
        seeds = [seeds]
    if isinstance(seeds, list) and len(seeds) > MAX_SEEDS:
        raise MatrixError(f"{where}: 'seeds' lists {len(seeds)} seeds; at most {MAX_SEEDS} (as a seed rule's max); "
                          "split the matrix if you need more")  # fmt: skip
    if not isinstance(seeds, list) or not seeds or not all(_is_int(s) and 0 <= s <= MAX_SEED for s in seeds):
        raise MatrixError(f"{where}: 'seeds' must be a non-empty list of integers from 0 to at most 2**63 - 1 "
                          "(the largest seed torch takes), or a seed rule table {min, max, precision}, "
                          f"got {seeds!r}")  # fmt: skip
    if len(set(seeds)) != len(seeds):
        raise MatrixError(f"{where}: 'seeds' lists a seed twice: {seeds!r}")
    return list(seeds), None


def _parse_extend(where: str, tune: Any, grid: tuple[tuple[str, tuple[Any, ...]], ...]) -> int:
    """``[tune] extend = N``: extensions beyond an edge of an ordered grid axis (default
    :data:`DEFAULT_EXTEND`; 0 without a grid)."""
    if not isinstance(tune, dict) or not grid:
        return 0
    extend = tune.get("extend", DEFAULT_EXTEND)
    if not _is_int(extend) or not 0 <= extend <= 10:
        raise MatrixError(f"{where}: [tune] extend must be an integer from 0 to 10 (how many times a method whose "
                          f"choice sits at an edge of the grid gets the next point beyond it), got {extend!r}")
    return int(extend)


def _parse_compare(where: str, compare: Any,
                   datasets: list[tuple[Spec, Any]]) -> tuple[tuple[tuple[str, str, float], ...], str]:  # fmt: skip
    """``[compare] margin = { test_bpc = 0.05 }`` and ``claim = "equivalence" | "non-inferiority"``:
    the margins per dataset (the matrix's over the dataset's declared defaults)."""
    import math

    from qbench.metrics import MetricSet

    if not isinstance(compare, dict):
        raise MatrixError(f"{where}: [compare] must be a table such as\n  [compare]\n  margin = {{ test_bpc = 0.05 }}")
    unknown = sorted(set(compare) - set(COMPARE_KEYS))
    if unknown:
        raise MatrixError(f"{where}: [compare] has unknown key(s) {', '.join(map(repr, unknown))}; known: "
                          f"{', '.join(COMPARE_KEYS)}")  # fmt: skip
    claim = compare.get("claim", "equivalence")
    if claim not in ("equivalence", "non-inferiority"):
        raise MatrixError(f"{where}: [compare] claim must be \"equivalence\" or \"non-inferiority\", got {claim!r}")
    given = compare.get("margin", {})
    if not isinstance(given, dict):
        raise MatrixError(f"{where}: [compare] margin must be a table of test metrics, e.g. "
                          f"margin = {{ test_bpc = 0.05 }}, got {given!r}")  # fmt: skip
    declared: dict[str, dict[str, float]] = {}
    for spec, dataset in datasets:
        try:
            metric_set = MetricSet.of(dataset)
        except ValueError:  # the registry reports a bad declaration when the plugin loads
            continue
        columns = [c for c in metric_set.columns() if c.startswith("test_")]
        declared[spec.label] = {**{c: math.nan for c in columns}, **metric_set.margins()}
    known = sorted({c for columns in declared.values() for c in columns})
    for column, margin in given.items():
        if column not in known:
            raise MatrixError(f"{where}: [compare] margin {column!r} is not a test metric of the matrix's datasets; "
                              f"known: {', '.join(known) or 'none'}")  # fmt: skip
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
                or margin <= 0:
            raise MatrixError(f"{where}: [compare] margin {column} must be a positive number in the metric's unit "
                              f"(the largest difference that is negligible), got {margin!r}")  # fmt: skip
    margins = []
    for label, columns in declared.items():
        for column, default in columns.items():
            margin = float(given[column]) if column in given else default
            if not math.isnan(margin):
                margins.append((label, column, margin))
    if "claim" in compare and not margins:
        raise MatrixError(f"{where}: [compare] claim = {claim!r} needs a margin: add "
                          "margin = { <test metric> = ... }")
    return tuple(sorted(margins)), str(claim)


def _parse_tune(where: str, tune: Any, axes: Mapping[str, tuple[Spec, ...]], train: Mapping[str, Any],
                host: Any) -> tuple[tuple[tuple[str, tuple[Any, ...]], ...], int, str]:  # fmt: skip
    """``[tune]``: ``train.KEY = [...]``, ``quantizer.PARAM = [...]``, ``cell.PARAM = [...]``,
    ``seeds = N`` (tune on the first N seeds, default 1), ``metric = "valid_..."``."""
    if not isinstance(tune, dict):
        raise MatrixError(f"{where}: [tune] must be a table such as\n  [tune]\n  train.lr = [0.001, 0.003, 0.01]")
    if "roles" in tune:
        # A role's parameters make methods, not tuning points: each value is its own row, tuned
        # for the [tune] values like any method (a validation search over bits would pick the most)
        raise MatrixError(f"{where}: [tune] cannot tune a role's parameters (roles...); list the values in the "
                          "role instead, each one a method of its own, e.g.\n"
                          '  roles.hidden = [{ name = "lsq", bits = 2, hidden = true }, '
                          '{ name = "lsq", bits = 4, hidden = true }]')  # fmt: skip
    unknown = sorted(set(tune) - set(TUNE_KEYS))
    if unknown:
        raise MatrixError(f"{where}: [tune] has unknown key(s) {', '.join(map(repr, unknown))}; tune "
                          f"train.KEY, quantizer.PARAM or cell.PARAM, and set seeds or metric")  # fmt: skip
    grid: list[tuple[str, tuple[Any, ...]]] = []
    for axis in TUNE_AXES:
        table = tune.get(axis, {})
        if not isinstance(table, dict):
            raise MatrixError(f"{where}: [tune] {axis} must hold keys such as {axis}.NAME = [values]")
        for name, values in table.items():
            key = f"{axis}.{name}"
            if not isinstance(values, list) or not values:
                raise MatrixError(f"{where}: [tune] {key} must be a non-empty list of values, got {values!r}")
            if len({_canonical(v) for v in values}) != len(values):
                raise MatrixError(f"{where}: [tune] {key} lists a value twice: {values!r}")
            checked = [_check_tuned_value(where, axis, name, value, axes, train, host) for value in values]
            if len({_canonical(v) for v in checked}) != len(checked):  # 1 and 1.0 are one grid point
                raise MatrixError(f"{where}: [tune] {key} lists a value twice once read as the parameter's type "
                                  f"({values!r} are {checked!r}); list each value once")  # fmt: skip
            grid.append((key, tuple(checked)))
    seeds = tune.get("seeds", 1)
    if not _is_int(seeds) or seeds < 1:
        raise MatrixError(f"{where}: [tune] seeds must be a positive integer (tune on the first N seeds), "
                          f"got {seeds!r}")  # fmt: skip
    metric = tune.get("metric", "")
    if not isinstance(metric, str) or (metric and not metric.startswith("valid_")):
        raise MatrixError(f"{where}: [tune] metric must name a validation metric (valid_...), got {metric!r}: "
                          "the test split never chooses a configuration")  # fmt: skip
    if not grid and ("seeds" in tune or "metric" in tune or "extend" in tune):
        raise MatrixError(f"{where}: [tune] sets seeds, metric or extend but tunes nothing; add e.g. train.lr = [...]")
    return tuple(grid), seeds, metric


def _check_tuned_value(where: str, axis: str, name: str, value: Any, axes: Mapping[str, tuple[Spec, ...]],
                       train: Mapping[str, Any], host: Any) -> Any:  # fmt: skip
    at = f"{where}: [tune] {axis}.{name}"
    if axis == "train":
        if name not in TRAIN_PARAMS:
            raise MatrixError(f"{at}: unknown [train] key; known: {', '.join(sorted(TRAIN_PARAMS))}")
        try:
            return resolve_train({**train, name: value})[name]
        except UsageError as exc:
            raise MatrixError(f"{at}: {exc}") from None
    registry = host.registry(axis)
    converted = value
    for spec in axes[axis]:
        if name in spec.given:
            raise MatrixError(f"{at} is tuned, and [[{axis}]] {spec.label} sets it too; remove one of the two")
        cls = registry.get(spec.name).cls
        if name not in getattr(cls, "params", {}):
            raise MatrixError(f"{at}: {axis} {spec.name!r} has no parameter {name!r}; a tuned parameter must "
                              f"be one every [[{axis}]] of the matrix declares")  # fmt: skip
        try:
            converted = cls(**{**{k: spec.params[k] for k in spec.given}, name: value}).config[name]
        except UsageError as exc:
            raise MatrixError(f"{at}: {exc}") from None
    return converted


def _check_excludes(where: str, excludes: Any, axes: Mapping[str, tuple[Spec, ...]],
                    seeds: Any = ()) -> tuple[Mapping[str, Any], ...]:  # fmt: skip
    """Validate the ``[[exclude]]`` rules; a rule that can match no case is an error, not a silent no-op.

    The cases are the full product of the axes, so a rule matches some case exactly when each of
    its keys matches some value of its own axis: that is checked key by key.
    """
    if not isinstance(excludes, list):
        raise MatrixError(f"{where}: [[exclude]] must be a list of tables")
    for index, rule in enumerate(excludes):
        at = f"{where}: [[exclude]] #{index + 1}"
        if not isinstance(rule, dict) or not rule:
            raise MatrixError(f"{at} must be a non-empty table such as quantizer = \"binary\"")
        for key, value in rule.items():
            if key not in EXCLUDE_KEYS:
                raise MatrixError(f"{at}: unknown key {key!r}; use {', '.join(EXCLUDE_KEYS)}")
            if key == "seed":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise MatrixError(f"{at}: seed must be an integer such as seed = 0, got {value!r}")
                if value not in seeds:
                    raise MatrixError(f"{at}: seed {value} is not one of the matrix's seeds {list(seeds)}; "
                                      "this rule would exclude nothing")  # fmt: skip
                continue
            names = {spec.name for spec in axes[key]}
            target = value.get("name") if isinstance(value, dict) else value
            if not isinstance(target, str):
                raise MatrixError(f"{at}: {key} must be a name or a table with 'name', got {value!r}")
            if target not in names:
                known = ", ".join(sorted(names))
                raise MatrixError(f"{at}: {key} {target!r} is not in the matrix's [[{key}]] axis ({known})")
            if not any(_matches({key: value}, {key: spec}) for spec in axes[key]):
                labels = ", ".join(spec.label for spec in axes[key] if spec.name == target)
                raise MatrixError(f"{at}: {key} {value!r} matches none of the matrix's {target!r} entries "
                                  f"({labels}): a parameter name or value that no entry has; "
                                  "this rule would exclude nothing")  # fmt: skip
    return tuple(excludes)


def _matches(rule: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    for key, wanted in rule.items():
        actual = values[key]
        if key == "seed":
            if actual != wanted:
                return False
            continue
        if isinstance(wanted, dict):
            if actual.name != wanted.get("name"):
                return False
            if any(actual.params.get(k) != v for k, v in wanted.items() if k != "name"):
                return False
        elif actual.name != wanted:
            return False
    return True


Method = tuple[Spec, Spec, Spec]  # (dataset, cell, quantizer) of a matrix


def methods(matrix: Matrix) -> list[Method]:
    """Every (dataset, cell, quantizer) of the matrix that some seed keeps, in expansion order."""
    found = []
    for dataset, cell, quantizer in itertools.product(matrix.datasets, matrix.cells, matrix.quantizers):
        values = {"quantizer": quantizer, "cell": cell, "dataset": dataset}
        if all(any(_matches(rule, {**values, "seed": seed}) for rule in matrix.excludes) for seed in matrix.seeds):
            continue
        found.append((dataset, cell, quantizer))
    return found


def case_for(matrix: Matrix, method: Method, point: Mapping[str, Any], seed: int) -> Case | None:
    """The case of one method at one grid point and seed (None when an exclude removes it)."""
    dataset, cell, quantizer = method
    if any(_matches(rule, {"quantizer": quantizer, "cell": cell, "dataset": dataset, "seed": seed})
           for rule in matrix.excludes):  # fmt: skip
        return None
    train, params = dict(matrix.train), {"quantizer": dict(quantizer.params), "cell": dict(cell.params)}
    for key, value in point.items():
        axis, name = key.split(".", 1)
        (train if axis == "train" else params[axis])[name] = value
    tuned_quantizer = (Spec(quantizer.name, params["quantizer"], quantizer.given, quantizer.roles) if point
                       else quantizer)  # fmt: skip
    tuned_cell = Spec(cell.name, params["cell"], cell.given) if point else cell
    case_id = case_id_for(tuned_quantizer, tuned_cell, dataset, matrix.hardware, seed, train)
    return Case(case_id, matrix.name, tuned_quantizer, tuned_cell, dataset, matrix.hardware, seed, train, dict(point))


def expand(matrix: Matrix) -> list[Case]:
    """The cases known before any result, in a stable order (dataset, cell, quantizer, point, seed).

    With a plain list of seeds and no grid that is every case of the matrix. With a ``[tune]``
    grid it is the grid on the tuning seeds (which configuration each method evaluates is chosen
    from their results); with a seed rule and no grid, the minimum seeds. :mod:`qbench.planning`
    decides the rest as results arrive.
    """
    protocol = matrix.protocol
    if protocol.grid:
        points, seeds = protocol.points(), protocol.tuning_seed_list
    else:
        points, seeds = [{}], protocol.seeds[: protocol.min_seeds]
    cases = []
    for method in methods(matrix):
        for point in points:
            for seed in seeds:
                case = case_for(matrix, method, point, seed)
                if case is not None:
                    cases.append(case)
    return cases
