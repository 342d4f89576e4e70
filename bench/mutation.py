"""Mutation testing of the rule catalogue and the Merkle module (issue 16).

    python bench/mutation.py                        # every module, then bench/MUTATION.md
    python bench/mutation.py --module safety        # one module (others keep their last result)
    python bench/mutation.py --list safety          # the mutants of a module, without running them
    python bench/mutation.py --budget 1800          # stop starting mutants after 30 minutes

Each module of ``ledger/domain/rules/`` and ``ledger/evidence/merkle.py`` is
mutated one small change at a time (an operator, a comparison, a constant, a
string, a returned or assigned value; see :class:`Mutator`), and the test files
that cover it (:data:`MODULES`) are run against each mutant.  A mutant is
*killed* when a test fails (or the run passes its time limit), and *survives*
when every test passes: some behaviour of the module is then pinned down by no
test.  The score is killed over mutants.

Every mutant runs in a fresh process forked from this one, which has already
imported the test libraries but no module of the project; the mutated source is
served to the import system from memory, so the working tree is never written.
Results are kept per module in ``bench/mutation.json``, and ``bench/MUTATION.md``
is written from them with each survivor's line, mutation and the reason it is
left (``bench/mutation_survivors.toml``: equivalent, and why, or a known gap).

The runs are CPU heavy: the script lowers its own priority (``nice`` 10) and runs
one mutant at a time unless told ``--jobs``.  CI does not run it; CI runs the
tests themselves.
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as dt
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import types
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "mutation.json"
TABLE = ROOT / "bench" / "MUTATION.md"
SURVIVORS = ROOT / "bench" / "mutation_survivors.toml"

RULES = "ledger/domain/rules"
# The module under test and the test files that cover it: the plain-function
# tests of the domain layer (no store), as the rule catalogue lists them.
MODULES: dict[str, list[str]] = {
    f"{RULES}/eligibility.py": [
        "tests/test_rules_boundaries.py",
        "tests/test_rules_eligibility.py",
        "tests/test_rules_ordering.py",
        "tests/test_rules_status.py",
    ],
    f"{RULES}/ordering.py": [
        "tests/test_rules_boundaries.py",
        "tests/test_rules_ordering.py",
        "tests/test_rules_chart.py",
    ],
    f"{RULES}/treatment.py": [
        "tests/test_rules_treatment.py",
        "tests/test_rules_status.py",
        "tests/test_rules_endpoints.py",
        "tests/test_summary.py",
    ],
    f"{RULES}/remission.py": [
        "tests/test_rules_boundaries.py",
        "tests/test_rules_remission.py",
        "tests/test_summary.py",
    ],
    f"{RULES}/safety.py": [
        "tests/test_rules_boundaries.py",
        "tests/test_rules_safety.py",
        "tests/test_rules_ordering.py",
        "tests/test_rules_history.py",
        "tests/test_rules_status.py",
    ],
    f"{RULES}/status.py": ["tests/test_rules_status.py", "tests/test_summary.py"],
    f"{RULES}/corrections.py": [
        "tests/test_rules_corrections.py",
        "tests/test_rules_history.py",
        "tests/test_rules_ordering.py",
        "tests/test_summary.py",
    ],
    f"{RULES}/sites.py": ["tests/test_rules_ordering.py"],
    f"{RULES}/endpoints.py": [
        "tests/test_rules_boundaries.py",
        "tests/test_rules_endpoints.py",
        "tests/test_summary.py",
    ],
    f"{RULES}/stats.py": ["tests/test_rules_boundaries.py", "tests/test_rules_stats.py"],
    f"{RULES}/versions.py": ["tests/test_rules_versions.py", "tests/test_summary.py"],
    f"{RULES}/coding.py": ["tests/test_rules_coding.py"],
    "ledger/evidence/merkle.py": ["tests/test_merkle_messages.py", "tests/test_merkle.py"],
}


# -- the mutants ---------------------------------------------------------------------------

_SWAPS: dict[type, type] = {
    # comparisons: each bound moved by one, each test negated
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    # arithmetic and bits
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitOr,
    # logic
    ast.And: ast.Or,
    ast.Or: ast.And,
}

_SYMBOLS: dict[type, str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.And: "and",
    ast.Or: "or",
}


@dataclass(frozen=True)
class Mutant:
    """One small change to a module: its number, line, what changed, and where.

    ``where`` is the enclosing classes and functions; ``function`` the outermost
    function whose body holds the change (its code can be swapped in a running
    process), None for a change run when the module is imported (a module or
    class constant, a default argument value).
    """

    index: int
    line: int
    mutation: str
    where: str
    function: str | None


def _typing_only(value: ast.expr) -> bool:
    """A ``TypeVar(...)``: read by type checkers only (annotations are never evaluated here)."""
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "TypeVar"


def _short(node: ast.AST, limit: int = 40) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Mutator(ast.NodeTransformer):
    """Walks a module in a fixed order, numbering every place a mutation applies.

    With ``target`` None it only lists them (:attr:`found`); with a number it
    applies that one mutation.  Docstrings, annotations, ``__all__`` and the
    ``__future__`` import are not mutated: no behaviour lives there.
    """

    def __init__(self, target: int | None = None) -> None:
        self.target = target
        self.count = 0
        self.found: list[Mutant] = []
        self.scope: list[str] = []
        self.function: str | None = None

    def _site(self, node: ast.AST, mutation: str) -> bool:
        """Number one place; True when it is the one to apply."""
        index = self.count
        self.count += 1
        where = ".".join(self.scope) or "<module>"
        self.found.append(Mutant(index, getattr(node, "lineno", 0), mutation, where, self.function))
        return index == self.target

    # scopes and what is never mutated

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> ast.AST:
        self.scope.append(node.name)
        if isinstance(node, ast.ClassDef):
            node.body = self._statements(node.body)
        else:
            node.args = self.visit(node.args)  # default values: evaluated at import
            outer = self.function
            self.function = outer or ".".join(self.scope)
            node.body = self._statements(node.body)
            self.function = outer
        self.scope.pop()
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._scoped(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        return self._scoped(node)

    def visit_Module(self, node: ast.Module) -> ast.AST:
        node.body = self._statements(node.body)
        return node

    def _statements(self, body: list[ast.stmt]) -> list[ast.stmt]:
        kept: list[ast.stmt] = []
        for statement in body:
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                kept.append(statement)  # a docstring
            elif isinstance(statement, ast.ImportFrom | ast.Import) or (
                isinstance(statement, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in statement.targets)
            ):
                kept.append(statement)
            else:
                kept.append(self.visit(statement))
        return kept

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return node  # annotations only

    def _assigned(self, node: ast.Assign | ast.AnnAssign, targets: str) -> None:
        """``x = value`` becomes ``x = None`` (``x = None`` becomes ``x = ''``)."""
        assert node.value is not None
        node.value = self.visit(node.value)
        empty = isinstance(node.value, ast.Constant) and node.value.value is None
        replacement = "''" if empty else "None"
        if self._site(node, f"{targets} = {replacement}"):
            node.value = ast.Constant("" if empty else None)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            self._assigned(node, _short(node.target))
        return node

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        if _typing_only(node.value):
            return node
        self._assigned(node, ", ".join(_short(target) for target in node.targets))
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        if node.value is None:
            return node
        node.value = self.visit(node.value)
        if not (isinstance(node.value, ast.Constant) and node.value.value is None) and self._site(
            node, f"return {_short(node.value)} -> return None"
        ):
            node.value = ast.Constant(None)
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        node.body = self.visit(node.body)
        if self._site(node, f"lambda body {_short(node.body)} -> None"):
            node.body = ast.Constant(None)
        return node

    # operators

    def _operator(self, node: ast.AST, op: ast.AST, context: str) -> ast.AST:
        swap = _SWAPS.get(type(op))
        if swap is not None and self._site(
            node, f"{_SYMBOLS[type(op)]} -> {_SYMBOLS[swap]} in {_short(node) if context == '' else context}"
        ):
            return swap()
        return op

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        node.op = self._operator(node, node.op, "")  # type: ignore[assignment]
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        node.op = self._operator(node, node.op, _short(node))  # type: ignore[assignment]
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        node.op = self._operator(node, node.op, "")  # type: ignore[assignment]
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        context = _short(node)
        chained = len(node.ops) > 1
        node.ops = [
            self._operator(node, op, f"{context} (comparison {k + 1})" if chained else context)  # type: ignore[misc]
            for k, op in enumerate(node.ops)
        ]
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not | ast.USub) and self._site(
            node, f"{_short(node)} -> {_short(node.operand)}"
        ):
            return node.operand
        return node

    def visit_Break(self, node: ast.Break) -> ast.AST:
        return ast.Continue() if self._site(node, "break -> continue") else node

    def visit_Continue(self, node: ast.Continue) -> ast.AST:
        return ast.Break() if self._site(node, "continue -> break") else node

    # constants

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        values: list[ast.expr] = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                values.append(self._constant(part))  # type: ignore[arg-type]
            else:
                # the value, not its format spec
                part.value = self.visit(part.value)  # type: ignore[attr-defined]
                values.append(part)
        node.values = values
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return self._constant(node)

    def _constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        new: object
        if isinstance(value, bool):
            new = not value
        elif isinstance(value, int | float):
            new = value + 1
        elif isinstance(value, str):
            new = f"XX{value}XX"
        elif isinstance(value, bytes):
            new = b"XX" + value + b"XX"
        else:
            return node
        if self._site(node, f"{value!r} -> {new!r}"):
            return ast.copy_location(ast.Constant(new), node)
        return node


def mutants(source: str) -> list[Mutant]:
    """Every mutant of a module's source, in a fixed order."""
    lister = Mutator()
    lister.visit(ast.parse(source))
    return lister.found


def mutated(source: str, index: int) -> str:
    """The source with mutant ``index`` applied."""
    tree = ast.parse(source)
    applier = Mutator(index)
    tree = ast.fix_missing_locations(applier.visit(copy.deepcopy(tree)))
    return ast.unparse(tree)


# -- running the tests against a mutant ----------------------------------------------------
#
# Two ways, both in processes forked from this one (which imports no module of the
# project, so a fork can still import a mutated one):
#
# * a change inside a function body: one process collects the covering tests once,
#   runs each of them with the unmutated module while noting which of its functions
#   each test calls, then for each mutant forks, swaps the mutated function's code
#   into the running module and runs only the tests that call that function,
#   stopping at the first failure;
# * a change run at import (a constant, a default value): a fresh process imports
#   the mutated module (served from memory) and runs every covering test, ``-x``.


class _Mutated(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves one module's mutated source to the import system, from memory."""

    def __init__(self, name: str, path: Path, source: str) -> None:
        self.name, self.path, self.source = name, path, source

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=str(self.path))

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__file__ = str(self.path)
        exec(compile(self.source, str(self.path), "exec"), module.__dict__)


@dataclass
class Outcome:
    """What the tests made of one mutant: ``killed``, ``timeout`` (a kill), ``survived``,
    or ``uncovered`` (no covering test calls its function: it survives)."""

    index: int
    line: int
    mutation: str
    where: str
    status: str
    seconds: float


def _module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _quiet() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


class _Pool:
    """At most ``jobs`` forked processes at once, each with its own time limit."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.running: dict[int, tuple[Mutant, float, float]] = {}

    def full(self) -> bool:
        return len(self.running) >= self.jobs

    def add(self, pid: int, mutant: Mutant, limit: float) -> None:
        self.running[pid] = (mutant, time.monotonic(), limit)

    def reap(self) -> list[Outcome]:
        """The mutants whose process ended or ran out of time since the last call."""
        ended = []
        for pid, (mutant, began, limit) in list(self.running.items()):
            done, code = os.waitpid(pid, os.WNOHANG)
            elapsed = time.monotonic() - began
            if done:
                status = "survived" if os.waitstatus_to_exitcode(code) == 0 else "killed"
            elif elapsed > limit:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = "timeout"
            else:
                continue
            del self.running[pid]
            ended.append(Outcome(mutant.index, mutant.line, mutant.mutation, mutant.where, status, elapsed))
        if not ended:
            time.sleep(0.01)
        return ended


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _codes(constant)


def _live_functions(module: ModuleType) -> dict[str, types.FunctionType]:
    """The module's own functions and methods by qualified name."""
    found: dict[str, types.FunctionType] = {}

    def add(value: object) -> None:
        for candidate in (value, getattr(value, "__func__", None), getattr(value, "fget", None)):
            if (
                isinstance(candidate, types.FunctionType)
                and candidate.__code__.co_filename == module.__file__
            ):
                found[candidate.__qualname__] = candidate

    for value in vars(module).values():
        add(value)
        if isinstance(value, type) and value.__module__ == module.__name__:
            for member in vars(value).values():
                add(member)
    return found


class _Server:
    """The pytest plugin that runs every in-function mutant in one collected session."""

    def __init__(self, path: str, source: str, chosen: list[Mutant], jobs: int, deadline: float) -> None:
        self.path, self.source, self.chosen = path, source, chosen
        self.jobs, self.deadline = jobs, deadline
        self.failed = False
        self.baseline = 0.0
        self.outcomes: list[Outcome] = []
        self.broken: str | None = None

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.failed = True

    def _run(self, items: list[Any]) -> bool:
        """Run ``items`` in order, stopping at the first failure; whether all passed."""
        for position, item in enumerate(items):
            following = items[position + 1] if position + 1 < len(items) else None
            item.ihook.pytest_runtest_protocol(item=item, nextitem=following)
            if self.failed:
                return False
        return True

    def pytest_runtestloop(self, session: Any) -> bool:
        filename = str(ROOT / self.path)
        items = list(session.items)
        calls: list[set[str]] = []
        seconds: list[float] = []
        for item in items:
            called: set[str] = set()

            def note(frame: types.FrameType, event: str, arg: object, called: set[str] = called) -> None:
                if event == "call" and frame.f_code.co_filename == filename:
                    called.add(frame.f_code.co_qualname)

            began = time.monotonic()
            sys.setprofile(note)
            try:
                self._run([item])
            finally:
                sys.setprofile(None)
            seconds.append(time.monotonic() - began)
            calls.append(called)
        if self.failed:
            self.broken = "the covering tests fail without any mutation"
            return True
        self.baseline = sum(seconds)
        module = sys.modules[_module_name(self.path)]
        live = _live_functions(module)
        pool = _Pool(self.jobs)
        pending = iter(self.chosen)
        while True:
            while not pool.full() and time.monotonic() < self.deadline:
                mutant = next(pending, None)
                if mutant is None:
                    break
                assert mutant.function is not None
                chosen = [
                    position
                    for position, names in enumerate(calls)
                    if any(
                        name == mutant.function or name.startswith(mutant.function + ".") for name in names
                    )
                ]
                if not chosen:
                    self.outcomes.append(
                        Outcome(mutant.index, mutant.line, mutant.mutation, mutant.where, "uncovered", 0.0)
                    )
                    continue
                code = compile(mutated(self.source, mutant.index), filename, "exec")
                replacement = next(c for c in _codes(code) if c.co_qualname == mutant.function)
                target = live[mutant.function]
                limit = max(10.0, 4 * sum(seconds[position] for position in chosen))
                pid = os.fork()
                if pid == 0:
                    try:
                        target.__code__ = replacement
                        os._exit(0 if self._run([items[position] for position in chosen]) else 1)
                    except BaseException:
                        os._exit(98)
                pool.add(pid, mutant, limit)
            if not pool.running:
                break
            self.outcomes.extend(pool.reap())
        return True


def _in_session(
    path: str, source: str, chosen: list[Mutant], tests: list[str], jobs: int, deadline: float
) -> tuple[float, list[Outcome]]:
    """Run the in-function mutants in one forked pytest session; its baseline time and outcomes."""
    with tempfile.NamedTemporaryFile("w+", suffix=".json") as report:
        pid = os.fork()
        if pid == 0:
            try:
                _quiet()
                import pytest

                server = _Server(path, source, chosen, jobs, deadline)
                pytest.main(["-q", "-p", "no:cacheprovider", *tests], plugins=[server])
                Path(report.name).write_text(
                    json.dumps(
                        {
                            "broken": server.broken,
                            "baseline": server.baseline,
                            "outcomes": [asdict(o) for o in server.outcomes],
                        }
                    )
                )
                os._exit(0)
            except BaseException:
                os._exit(97)
        os.waitpid(pid, 0)
        text = Path(report.name).read_text()
    if not text:
        raise SystemExit(f"{path}: the mutation session did not finish ({tests})")
    done = json.loads(text)
    if done["broken"]:
        raise SystemExit(f"{path}: {done['broken']} ({tests})")
    return done["baseline"], [Outcome(**o) for o in done["outcomes"]]


def _fresh(path: str, source: str, tests: list[str]) -> int:
    """Fork a process that imports ``source`` as the module at ``path`` and runs ``tests``; its pid."""
    pid = os.fork()
    if pid:
        return pid
    try:
        _quiet()
        sys.meta_path.insert(0, _Mutated(_module_name(path), ROOT / path, source))
        import pytest

        os._exit(int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests])))
    except BaseException:
        os._exit(99)


def _at_import(
    path: str, source: str, chosen: list[Mutant], tests: list[str], jobs: int, deadline: float
) -> list[Outcome]:
    """Run the mutants that act at import, each in a fresh process with every covering test."""
    began = time.monotonic()
    pid = _fresh(path, source, tests)
    os.waitpid(pid, 0)
    limit = max(10.0, 4 * (time.monotonic() - began))
    pool = _Pool(jobs)
    outcomes: list[Outcome] = []
    pending = iter(chosen)
    while True:
        while not pool.full() and time.monotonic() < deadline:
            mutant = next(pending, None)
            if mutant is None:
                break
            pool.add(_fresh(path, mutated(source, mutant.index), tests), mutant, limit)
        if not pool.running:
            break
        outcomes.extend(pool.reap())
    return outcomes


def run_module(path: str, jobs: int, deadline: float, sample: int | None) -> dict[str, object]:
    """Run every mutant of one module (or a fixed sample of them) against its covering tests."""
    tests = [test for test in MODULES[path] if (ROOT / test).exists()]
    source = (ROOT / path).read_text()
    everyone = mutants(source)
    chosen = (
        everyone
        if sample is None
        else sorted(random.Random(16).sample(everyone, sample), key=lambda m: m.index)
    )
    print(f"{path}: {len(chosen)} of {len(everyone)} mutants ({', '.join(tests)})", flush=True)
    began = time.monotonic()
    baseline, outcomes = _in_session(
        path, source, [m for m in chosen if m.function is not None], tests, jobs, deadline
    )
    outcomes += _at_import(path, source, [m for m in chosen if m.function is None], tests, jobs, deadline)
    outcomes.sort(key=lambda o: o.index)
    for outcome in outcomes:
        if outcome.status in ("survived", "uncovered"):
            print(
                f"  {outcome.status}: line {outcome.line} ({outcome.where}): {outcome.mutation}", flush=True
            )
    return {
        "module": path,
        "tests": tests,
        "total": len(everyone),
        "sampled": sample is not None,
        "run": len(outcomes),
        "finished": len(outcomes) == len(chosen),
        "killed": sum(o.status in ("killed", "timeout") for o in outcomes),
        "timeouts": sum(o.status == "timeout" for o in outcomes),
        "survivors": [asdict(o) for o in outcomes if o.status in ("survived", "uncovered")],
        "tests_seconds": round(baseline, 1),
        "seconds": round(time.monotonic() - began, 1),
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
    }


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


# -- the table -----------------------------------------------------------------------------


def _reasons() -> dict[str, dict[str, str]]:
    """Why each known survivor is left, by module: ``"<function>: <mutation>" = "equivalent: ..."``."""
    if not SURVIVORS.exists():
        return {}
    return tomllib.loads(SURVIVORS.read_text())


def render(results: dict[str, dict[str, object]]) -> str:
    reasons = _reasons()
    lines = [
        "# Mutation testing (issue 16)",
        "",
        "Written by `python bench/mutation.py` (see its docstring): each module is mutated one",
        "small change at a time and its covering tests are run against each mutant; a mutant",
        "survives when every test still passes. Survivors are listed with the reason they are",
        "left: *equivalent* (no test can tell the mutant from the module, and why) or *gap*.",
        "",
        "| module | mutants | killed | score | tests | commit | run at |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in MODULES:
        result = results.get(path)
        if result is None:
            lines.append(f"| {path} | not run | | | | | |")
            continue
        run, killed = int(result["run"]), int(result["killed"])  # type: ignore[call-overload]
        mutants_text = f"{run}" if run == result["total"] else f"{run} of {result['total']}"
        if result.get("sampled"):
            mutants_text += " (sample)"
        elif not result["finished"]:
            mutants_text += " (budget spent)"
        score = f"{100 * killed / run:.1f}%" if run else "-"
        tests = ", ".join(Path(t).name for t in result["tests"])  # type: ignore[attr-defined]
        when = f"{result['commit']} | {result['at']}"
        lines.append(f"| {path} | {mutants_text} | {killed} | {score} | {tests} | {when} |")
    lines += ["", "## Survivors", ""]
    for path in MODULES:
        result = results.get(path)
        if not result or not result["survivors"]:
            continue
        known = reasons.get(Path(path).stem, {})
        lines += [
            f"### {path}",
            "",
            "| line | in | mutation | why it survives |",
            "| --- | --- | --- | --- |",
        ]
        for survivor in result["survivors"]:  # type: ignore[attr-defined]
            key = f"{survivor['where']}: {survivor['mutation']}"
            why = known.get(key, "unexplained")
            mutation = survivor["mutation"].replace("|", "\\|")
            lines.append(f"| {survivor['line']} | `{survivor['where']}` | `{mutation}` | {why} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _pick(name: str) -> str:
    for path in MODULES:
        if Path(path).stem == name or path == name:
            return path
    raise SystemExit(f"--module: unknown module '{name}' (one of {', '.join(Path(p).stem for p in MODULES)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", help="a module's name (e.g. safety); repeatable")
    parser.add_argument("--list", metavar="MODULE", help="print the mutants of a module and stop")
    parser.add_argument("--table", action="store_true", help="only write bench/MUTATION.md from the results")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--budget", type=float, default=3600, help="seconds before no new mutant starts")
    parser.add_argument(
        "--sample", type=int, help="run a fixed random sample of this many mutants per module"
    )
    args = parser.parse_args(argv)
    if args.list:
        for mutant in mutants((ROOT / _pick(args.list)).read_text()):
            print(f"{mutant.index:4} line {mutant.line:4} {mutant.where}: {mutant.mutation}")
        return 0
    if args.table:
        TABLE.write_text(render(json.loads(RESULTS.read_text())))
        return 0
    os.nice(10)
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = tempfile.mkdtemp(prefix="mutation-hypothesis-")
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    sys.dont_write_bytecode = True
    os.chdir(ROOT)
    # what every mutant's process needs, imported once here (nothing of the project)
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401

    deadline = time.monotonic() + args.budget
    for path in [_pick(name) for name in args.module] if args.module else list(MODULES):
        result = run_module(path, args.jobs, deadline, args.sample)
        # read again: another run (of other modules) may have written since
        results: dict[str, dict[str, object]] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results[path] = result
        run = int(result["run"])  # type: ignore[call-overload]
        print(f"{path}: {result['killed']} of {run} killed", flush=True)
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        TABLE.write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
