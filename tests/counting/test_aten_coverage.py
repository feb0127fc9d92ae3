"""Every aten overload of the running torch is classified: counted by a formula, known free,
decomposed into counted ops, or deliberately uncounted with a documented reason
(registry.DELIBERATELY_UNCOUNTED, or a TorchScript-only overload the dispatcher never runs). A new
torch release's new ops fail here until they are classified, in the pinned, floor and newest
environments alike."""

from __future__ import annotations

from pathlib import Path

import torch

from pytest_flopbudget.counting.registry import (
    DECOMPOSE,
    DELIBERATELY_UNCOUNTED,
    FREE,
    TORCHSCRIPT_ONLY,
    Registry,
    uncounted_reason,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "formulas.md"


def aten_overloads() -> list[tuple[str, str]]:
    """(name, overload) of every aten schema torch knows, TorchScript's included."""
    found = set()
    for schema in torch._C._jit_get_all_schemas():
        if schema.name.startswith("aten::"):
            found.add((schema.name[len("aten::"):], schema.overload_name or "default"))
    return sorted(found)


def classify(registry: Registry, name: str, overload: str) -> str:
    packet = getattr(torch.ops.aten, name)
    op = getattr(packet, overload)
    rule = registry.resolve(op)
    if rule is FREE:
        return "free"
    if rule is DECOMPOSE:
        return "decompose"
    if rule is not None:
        return "formula"
    reason = uncounted_reason(op)
    return f"uncounted: {reason}" if reason else "UNCLASSIFIED"


def test_every_aten_overload_is_counted_free_decomposed_or_deliberately_uncounted():
    registry = Registry()  # a fresh registry: no user formula of another test can hide a gap
    overloads = aten_overloads()
    assert len(overloads) > 1000  # the enumeration itself works
    kinds = {key: classify(registry, *key) for key in overloads}
    unclassified = sorted(f"aten.{name}.{overload}" for (name, overload), kind in kinds.items()
                          if kind == "UNCLASSIFIED")
    assert not unclassified, (
        f"{len(unclassified)} aten overloads of torch {torch.__version__} have no formula, are not known "
        f"free and are not listed in registry.DELIBERATELY_UNCOUNTED: {unclassified}"
    )
    counted = sum(1 for kind in kinds.values() if kind == "formula")
    assert counted > 500


def test_the_core_opset_is_counted_or_free():
    """Every op of torch's core ATen opset (what exported graphs are decomposed to) is counted or free."""
    registry = Registry()
    core = [
        getattr(getattr(torch.ops.aten, name), overload)
        for name, overload in aten_overloads()
        if torch.Tag.core in getattr(getattr(torch.ops.aten, name), overload).tags
    ]
    assert len(core) > 150
    missing = [str(op) for op in core if registry.resolve(op) in (None, DECOMPOSE)]
    assert not missing


def test_torchscript_only_overloads_are_uncounted_and_resolve_without_error():
    op = torch.ops.aten.__and__.bool  # `a and b` on Python bools in TorchScript
    assert Registry().resolve(op) is None
    assert uncounted_reason(op) == TORCHSCRIPT_ONLY
    assert uncounted_reason(torch.ops.aten.add.Tensor) is None


def test_the_deliberately_uncounted_list_is_documented_and_not_counted():
    text = DOCS.read_text(encoding="utf-8")
    registry = Registry()
    for name in DELIBERATELY_UNCOUNTED:
        assert f"`{name}`" in text, f"docs/formulas.md does not list the deliberately uncounted {name}"
        packet = getattr(torch.ops.aten, name.partition(".")[0], None)
        if packet is None:
            continue  # absent from this torch release
        for overload in packet.overloads():
            rule = registry.resolve(getattr(packet, overload))  # a composite overload may decompose
            assert rule is None or rule is DECOMPOSE, f"{name}.{overload} is listed as uncounted but counted"
