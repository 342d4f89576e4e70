"""docs/rules.md names every rule function, and only functions, parameters and tests that exist (issue 13)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import msgspec

import ledger.domain.rules as rules
from ledger.domain.protocol import Protocol

ROOT = Path(__file__).parent.parent
CATALOGUE = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
MODULES = {
    info.name: importlib.import_module(f"{rules.__name__}.{info.name}")
    for info in pkgutil.iter_modules(rules.__path__)
}


def public_functions() -> set[str]:
    """``module.function`` of every public function defined in ``ledger/domain/rules/``."""
    return {
        f"{name}.{function}"
        for name, module in MODULES.items()
        for function, value in inspect.getmembers(module, inspect.isfunction)
        if value.__module__ == module.__name__ and not function.startswith("_")
    }


def named_functions() -> set[str]:
    return set(re.findall(r"`(\w+\.\w+)\(\)`", CATALOGUE))


def test_every_rule_function_is_in_the_catalogue() -> None:
    assert sorted(public_functions() - named_functions()) == []


def test_the_catalogue_names_only_functions_that_exist() -> None:
    assert sorted(named_functions() - public_functions()) == []


def test_the_catalogue_names_only_protocol_fields_that_exist() -> None:
    parts = {field.name: field.type for field in msgspec.structs.fields(Protocol)}
    missing = []
    for section, field in re.findall(r"`(\w+)\.(\w+)`", CATALOGUE):
        if field == "py":  # a module's file name
            continue
        kind = parts.get(section)
        if kind is None or field not in getattr(kind, "__struct_fields__", ()):
            missing.append(f"{section}.{field}")
    assert missing == []


def test_the_catalogue_names_only_tests_that_exist() -> None:
    missing = []
    for path, test in re.findall(r"`(tests/\w+\.py)::(\w+)`", CATALOGUE):
        source = ROOT / path
        if not source.exists() or f"def {test}(" not in source.read_text(encoding="utf-8"):
            missing.append(f"{path}::{test}")
    assert missing == []
