"""The method registry: every lookup by name goes through it, and a new method is one entry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from privmed.errors import PrivmedError
from privmed.methods.base import GenerativeMethod, PrivateMethod, PrivatizingMethod
from privmed.methods.registry import METHODS, MethodKind, MethodSpec, get_method, method_names, register

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize("name", method_names())
def test_each_entry_names_a_method_of_its_kind(name: str) -> None:
    spec = get_method(name)
    assert issubclass(spec.cls, PrivateMethod)
    if spec.kind is MethodKind.GENERATIVE:
        assert issubclass(spec.cls, GenerativeMethod)
    elif spec.kind is MethodKind.PRIVATIZING:
        assert issubclass(spec.cls, PrivatizingMethod)
    assert "epsilon" not in spec.options()[1] and spec.title


def test_unknown_and_duplicate_names_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PrivmedError, match="unknown method 'teleport'; methods: dpwgan"):
        get_method("teleport")
    with pytest.raises(ValueError, match="registered already"):
        register(get_method("acgan"))
    monkeypatch.setattr("privmed.methods.registry.METHODS", dict(METHODS))
    spec = register(MethodSpec(name="acgan", cls=get_method("dpwgan").cls, kind=MethodKind.GENERATIVE, title="x"), force=True)
    assert get_method("acgan") is spec


def test_no_dynamic_imports_and_no_method_name_compared_outside_the_registry() -> None:
    dynamic = subprocess.run(["grep", "-rnE", r"import_module|__import__", str(SRC)], capture_output=True, text=True).stdout
    assert dynamic == ""
    names = "|".join(method_names())
    compared = subprocess.run(
        ["grep", "-rnE", rf"(==|!=| in) *\(?\"({names})\"|\"({names})\" *(==|!=)", str(SRC)], capture_output=True, text=True
    ).stdout
    assert [line for line in compared.splitlines() if "methods/registry.py" not in line] == []
