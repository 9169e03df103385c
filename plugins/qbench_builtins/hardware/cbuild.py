"""Build and run the generated C library: harness, self-test vectors, Makefile, host and Cortex-M builds.

:mod:`.cgen` writes the library; this module writes what drives it (the texts are in
:mod:`.ctemplates`) and runs it:

* ``qb_harness.c``: reads integer inputs on stdin (streams, their lengths, token ids or
  activation codes), prints every hidden state and logit as integers; ``--bench R`` instead runs
  the input R times and prints the CPU nanoseconds per token (``clock()``, C99);
* ``qb_vectors.h`` + ``qb_selftest.c``: inputs and the simulator's expected outputs compiled in,
  for a target without a file system (Cortex-M under QEMU, semihosting for the text and the exit
  status);
* a ``Makefile`` with the host, sanitizer and Cortex-M builds.

Missing tools raise :class:`qbench.Unsupported` naming the Debian package that provides them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import qbench
from qbench_builtins.hardware.cgen import CLibrary
from qbench_builtins.hardware.ctemplates import HARNESS, LINKER_SCRIPT, MAKEFILE, SELFTEST, STARTUP
from qbench_builtins.hardware.engine import RunResult
from qbench_builtins.hardware.program import ModelProgram

C_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
#: the timed build: tuned for this CPU, as a deployment build for it would be (the outputs do not
#: depend on the flags: the code is integer and free of undefined behaviour)
FAST_FLAGS = ("-march=native",)
SANITIZE_FLAGS = ("-fsanitize=undefined,address", "-fno-sanitize-recover=all", "-g")
ARM_GCC = "arm-none-eabi-gcc"
#: Cortex-M3 of QEMU's MPS2 AN385 board; newlib's semihosting runtime (rdimon) prints and exits
ARM_FLAGS = ("-mcpu=cortex-m3", "-mthumb", "-Os", "-ffunction-sections", "-fdata-sections")
#: instructions per SysTick tick under QEMU -icount shift=0 (1 ns per instruction, 25 MHz clock)
MPS2_INSTRUCTIONS_PER_TICK = 40
TICKS_LINE = re.compile(r"qb steps: (\d+) SysTick ticks over (\d+) steps")
ARM_LINK = ("--specs=rdimon.specs", "-Wl,--gc-sections", "-T", "qb_mps2.ld")
QEMU_ARM = "qemu-system-arm"
PACKAGES = {
    "cc": "gcc",
    "gcc": "gcc",
    "size": "binutils",
    "objdump": "binutils",
    ARM_GCC: "gcc-arm-none-eabi and libnewlib-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    QEMU_ARM: "qemu-system-arm",
}


def tool(name: str) -> str:
    """Path of ``name`` on PATH, or :class:`qbench.Unsupported` naming the Debian package to install."""
    found = shutil.which(name)
    if found is None:
        raise qbench.Unsupported(f"{name} is not installed (Debian: apt-get install {PACKAGES.get(name, name)})")
    return found


def host_compiler() -> str:
    for name in ("cc", "gcc"):
        if shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    return tool("gcc")


def _layer_macro(program: ModelProgram, macro: str) -> str:
    return " ".join(f"{macro}(s.h{layer.index}, {layer.hidden})" for layer in program.layers)


def harness_sources(program: ModelProgram) -> dict[str, str]:
    """The stdin harness, the self-test main, the Cortex-M startup, linker script and Makefile."""
    prints = _layer_macro(program, "QB_PRINT_LAYER").replace("s.h", "s->h")
    checks = _layer_macro(program, "QB_CHECK_LAYER")
    return {
        "qb_harness.c": HARNESS.replace("QB_PRINT_LAYERS", prints),
        "qb_selftest.c": SELFTEST.replace("QB_CHECK_LAYERS", checks),
        "qb_startup.c": STARTUP,
        "qb_mps2.ld": LINKER_SCRIPT,
        "Makefile": MAKEFILE,
    }


@dataclass
class Vectors:
    """Integer inputs per stream and the simulator's outputs, as the harness reads and prints them."""

    lengths: list[int]
    inputs: np.ndarray  # [sum(lengths), width] int64 (token ids or activation codes)
    hidden: np.ndarray  # [sum(lengths), sum of hidden sizes]
    logits: np.ndarray  # [outputs evaluated, C]

    def stdin(self) -> str:
        lines = [str(len(self.lengths))]
        start = 0
        for n in self.lengths:
            rows = self.inputs[start : start + n]
            lines.append(f"{n} " + " ".join(str(int(v)) for v in rows.reshape(-1)))
            start += n
        return "\n".join(lines) + "\n"

    def expected(self, language_model: bool) -> str:
        """What ``qb_harness`` prints for :meth:`stdin` when it executes the simulator's program."""
        lines, row, out = [], 0, 0
        for n in self.lengths:
            for _ in range(n):
                lines.append("h" + "".join(f" {int(v)}" for v in self.hidden[row]))
                row += 1
                if language_model:
                    lines.append("y" + "".join(f" {int(v)}" for v in self.logits[out]))
                    out += 1
            if not language_model:
                lines.append("y" + "".join(f" {int(v)}" for v in self.logits[out]))
                out += 1
        return "\n".join(lines) + "\n"

    def header(self) -> str:
        def arr(ctype: str, name: str, values: np.ndarray) -> str:
            items = [str(int(v)) if abs(int(v)) < 1 << 31 else f"INT64_C({int(v)})" for v in values.reshape(-1)]
            items = items or ["0"]
            body = ",\n    ".join(", ".join(items[i : i + 16]) for i in range(0, len(items), 16))
            return f"static const {ctype} {name}[{len(items)}] = {{\n    {body}\n}};\n"

        return "\n".join([
            "/* qb_vectors.h: inputs and the shift-add simulator's outputs (generated by qbench) */",
            f"#define QB_VEC_STREAMS {len(self.lengths)}",
            arr("long", "qb_vec_lengths", np.asarray(self.lengths)),
            arr("int32_t", "qb_vec_inputs", self.inputs),
            arr("int32_t", "qb_vec_hidden", self.hidden),
            arr("int64_t", "qb_vec_logits", self.logits),
        ])  # fmt: skip


def vectors(program: ModelProgram, inputs: np.ndarray, lengths: np.ndarray | None, run: RunResult) -> Vectors:
    """The harness's view of a simulator run: per stream its valid steps, hidden states and logits."""
    if program.layers[0].one_hot or program.input_table is not None:
        codes = np.asarray(inputs, dtype=np.int64)  # token ids: the library holds the input table
    else:
        codes = np.asarray(program.input_codes(inputs)[0], dtype=np.int64)
    steps, batch = codes.shape[0], codes.shape[1]
    valid = [steps] * batch if lengths is None else [int(n) for n in lengths]
    rows_in, rows_h = [], []
    for b, n in enumerate(valid):
        rows_in.append(codes[:n, b].reshape(n, -1))
        rows_h.append(np.concatenate([np.asarray(h[:n, b], dtype=np.int64) for h in run.hidden], axis=1))
    return Vectors(
        valid,
        np.concatenate(rows_in) if rows_in else np.zeros((0, 1), np.int64),
        np.concatenate(rows_h) if rows_h else np.zeros((0, 1), np.int64),
        np.asarray(run.logits, dtype=np.int64),
    )


def write_library(directory: Path, library: CLibrary, program: ModelProgram, vec: Vectors | None) -> list[str]:
    """Write every source into ``directory``; returns the file names written."""
    files = dict(library.files)
    files.update(harness_sources(program))
    if vec is not None:
        files["qb_vectors.h"] = vec.header()
        files["qb_inputs.txt"] = vec.stdin()
        files["qb_expected.txt"] = vec.expected(program.task == "language-model")
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return sorted(files)


def _run(cmd: list[str], cwd: Path, stdin: str | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")
    return proc.stdout


def compile_host(directory: Path, main: str, out: str, sanitize: bool = False, opt: str = "-O2",
                 extra: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """Compile ``main`` with the model for this machine (strict C99 flags, warnings are errors)."""
    flags = [*C_FLAGS, opt, *(SANITIZE_FLAGS if sanitize else ()), *extra]
    _run([host_compiler(), *flags, "-o", out, main, "qb_model.c"], directory)
    return directory / out


def compile_object(directory: Path, opt: str = "-O2", extra: tuple[str, ...] = ()) -> Path:
    """``qb_model.o`` for this machine: its size and object code are what the checks read."""
    _run([host_compiler(), *C_FLAGS, opt, *extra, "-c", "-o", "qb_model.o", "qb_model.c"], directory)
    return directory / "qb_model.o"


def parse_harness(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(hidden rows, logits rows) printed by the harness."""
    hidden, logits = [], []
    for line in text.splitlines():
        if line.startswith("h"):
            hidden.append([int(v) for v in line[1:].split()])
        elif line.startswith("y"):
            logits.append([int(v) for v in line[1:].split()])
    return np.array(hidden, dtype=np.int64), np.array(logits, dtype=np.int64)


def run_harness(exe: Path, vec: Vectors) -> tuple[np.ndarray, np.ndarray]:
    return parse_harness(_run([str(exe)], exe.parent, vec.stdin()))


def bench_harness(exe: Path, vec: Vectors, repeats: int) -> float:
    """CPU nanoseconds per token of the compiled step (the harness times itself with ``clock()``)."""
    out = _run([str(exe), "--bench", str(repeats)], exe.parent, vec.stdin())
    match = re.search(r"ns_per_token ([0-9.eE+-]+)", out)
    if match is None:
        raise RuntimeError(f"the benchmark harness printed no timing: {out[-500:]}")
    return float(match.group(1))


def section_sizes(obj: Path, size_tool: str = "size") -> dict[str, int]:
    """text / data / bss bytes of an object or executable (``size -A``: rodata counted with text)."""
    out = _run([tool(size_tool), "-A", str(obj)], obj.parent)
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        name, value = parts[0], int(parts[1])
        if name.startswith((".text", ".init", ".fini", ".vectors")):
            sizes["text"] += value
        elif name.startswith((".rodata", ".ARM.exidx")):
            sizes["rodata"] += value
        elif name.startswith(".data"):
            sizes["data"] += value
        elif name.startswith(".bss") or name == "COMMON":
            sizes["bss"] += value
    return sizes


def function_code(obj: Path, names: list[str]) -> dict[str, list[str]]:
    """Disassembled instructions (mnemonics and operands) of each function ``names`` of ``obj``."""
    out = _run([tool("objdump"), "-d", "--no-show-raw-insn", str(obj)], obj.parent)
    code: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        head = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if head:
            current = head.group(1) if head.group(1) in names else None
            if current:
                code[current] = []
            continue
        if current and "\t" in line:
            code[current].append(line.split("\t", 1)[1].strip())
    return code


def stack_usage(directory: Path, opt: str = "-O2") -> dict[str, int]:
    """Bytes of stack of each function of the model (gcc ``-fstack-usage``)."""
    _run([host_compiler(), *C_FLAGS, opt, "-fstack-usage", "-c", "-o", "qb_model_su.o", "qb_model.c"], directory)
    return read_stack_usage(directory / "qb_model_su.su")


def read_stack_usage(su: Path) -> dict[str, int]:
    """{function: stack bytes} from a gcc ``.su`` file ({} when there is none)."""
    usage = {}
    if su.exists():
        for line in su.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].isdigit():
                usage[parts[0].rsplit(":", 1)[-1]] = int(parts[1])
    return usage


def cortex_m_build(directory: Path) -> Path:
    """The self-test for the MPS2 AN385 Cortex-M3 (newlib, semihosting)."""
    gcc = tool(ARM_GCC)
    _run([gcc, *C_FLAGS, *ARM_FLAGS, "-DQB_SYSTICK", "-o", "qb_selftest.elf", "qb_startup.c", "qb_selftest.c",
          "qb_model.c",
          *ARM_LINK], directory)  # fmt: skip
    _run([gcc, *C_FLAGS, *ARM_FLAGS, "-fstack-usage", "-c", "-o", "qb_model_arm.o", "qb_model.c"], directory)
    return directory / "qb_selftest.elf"


def run_qemu(elf: Path, timeout: float = 120) -> tuple[int, str, int | None]:
    """(exit status, output, instructions per step or None) of the self-test under QEMU.

    ``-icount shift=0`` makes QEMU's virtual clock advance 1 ns per guest instruction, so the
    SysTick ticks the self-test reads around each ``qb_step`` count instructions (40 per tick:
    the figure is exact to 40 instructions per step, and the mean over many steps closer).
    """
    qemu = tool(QEMU_ARM)
    cmd = [qemu, "-M", "mps2-an385", "-nographic", "-semihosting", "-kernel", str(elf), "-icount", "shift=0"]
    env = dict(os.environ)
    proc = subprocess.run(cmd, cwd=elf.parent, capture_output=True, text=True, timeout=timeout, env=env)
    text = proc.stdout + proc.stderr
    ticks = TICKS_LINE.search(text)
    per_step = None
    if ticks and int(ticks.group(2)):
        per_step = round(int(ticks.group(1)) * MPS2_INSTRUCTIONS_PER_TICK / int(ticks.group(2)))
    return proc.returncode, text, per_step


@dataclass
class Verification:
    """What was built and run, and what it showed (None: not run, with the reason in ``skipped``)."""

    host_identical: int | None = None
    host_checked: int | None = None
    harness_identical: bool | None = None
    sanitizer_clean: bool | None = None
    host_sizes: dict[str, int] | None = None
    stack_bytes: int | None = None
    arm_sizes: dict[str, int] | None = None
    arm_selftest: str | None = None
    arm_identical: bool | None = None
    arm_instructions: int | None = None  # per step, counted by QEMU
    skipped: dict[str, str] | None = None


SELFTEST_LINE = re.compile(r"qb selftest: (\d+) of (\d+) outputs identical")


def _selftest_counts(text: str) -> tuple[int, int]:
    match = SELFTEST_LINE.search(text)
    if match is None:
        raise RuntimeError(f"the self-test printed no result: {text[-500:]}")
    return int(match.group(1)), int(match.group(2))


def _run_selftest(exe: Path) -> str:
    """The self-test's output; a non-zero status with its summary line is a mismatch, not a crash."""
    proc = subprocess.run([str(exe)], cwd=exe.parent, capture_output=True, text=True, timeout=300)
    if proc.returncode not in (0, 1) or not SELFTEST_LINE.search(proc.stdout):
        raise RuntimeError(f"{exe.name} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")
    return proc.stdout


def verify(directory: Path, sanitize: bool = True, cortex_m: bool = True) -> Verification:
    """Compile and run the self-test written into ``directory`` on this machine (and sanitized, and
    on the Cortex-M target under QEMU where the tools are installed)."""
    result = Verification(skipped={})
    assert result.skipped is not None
    exe = compile_host(directory, "qb_selftest.c", "qb_selftest")
    result.host_identical, result.host_checked = _selftest_counts(_run_selftest(exe))
    harness = compile_host(directory, "qb_harness.c", "qb_harness")
    printed = _run([str(harness)], directory, (directory / "qb_inputs.txt").read_text())
    result.harness_identical = printed == (directory / "qb_expected.txt").read_text()
    obj = compile_object(directory)
    result.host_sizes = section_sizes(obj)
    usage = stack_usage(directory)
    # an upper bound: every function's frame at once (the library has no recursion)
    result.stack_bytes = sum(usage.values())
    if sanitize:
        try:
            exe = compile_host(directory, "qb_selftest.c", "qb_selftest_sanitized", sanitize=True)
            text = _run_selftest(exe)
            identical, checked = _selftest_counts(text)
            result.sanitizer_clean = identical == checked
        except RuntimeError as exc:
            result.sanitizer_clean = False
            result.skipped["sanitizer"] = str(exc)[:500]
    if cortex_m:
        try:
            elf = cortex_m_build(directory)
            result.arm_sizes = section_sizes(directory / "qb_model_arm.o", "arm-none-eabi-size")
            status, text, result.arm_instructions = run_qemu(elf)
            line = SELFTEST_LINE.search(text)
            result.arm_selftest = line.group(0) if line else f"exit {status}: {text[-300:]}"
            identical, checked = _selftest_counts(text)
            result.arm_identical = status == 0 and identical == checked
        except qbench.Unsupported as exc:
            result.skipped["cortex-m"] = str(exc)
    return result
