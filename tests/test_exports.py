"""The public surface stays honest (in the manner of trio's ``test_exports.py``).

Every name in ``agent_messaging.__all__`` is importable, the list is sorted and
has no duplicates, every public class, function and module has a docstring of
its own, every public type alias a ``#:`` comment, and nothing else that looks
public leaks from the package namespace.
"""

from __future__ import annotations

import inspect
import types

import agent_messaging
import agent_messaging.actors.meeting.types as meeting_types
import agent_messaging.actors.registry as registry
from agent_messaging import errors


def test_all_is_sorted_and_unique() -> None:
    names = list(agent_messaging.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_every_name_in_all_is_importable() -> None:
    for name in agent_messaging.__all__:
        assert hasattr(agent_messaging, name), name
    namespace: dict[str, object] = {}
    exec("from agent_messaging import *", namespace)
    assert set(agent_messaging.__all__) <= set(namespace)


def test_no_public_name_outside_all() -> None:
    public = {n for n in vars(agent_messaging) if not n.startswith("_")}
    # (llm and mcp: the optional extras' modules, attributes of the package once something imported them)
    submodules = {"actors", "cli", "persistence", "runtime", "models", "config", "errors", "schema", "llm", "mcp"}
    assert public - set(agent_messaging.__all__) - submodules == set()


def _own_doc(obj: object) -> str | None:
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return doc.strip() if isinstance(doc, str) and doc.strip() else None


def test_every_public_object_is_documented() -> None:
    undocumented = []
    for name in agent_messaging.__all__:
        obj = getattr(agent_messaging, name)
        if name == "__version__":
            assert isinstance(obj, str)
            continue
        if isinstance(obj, type | types.FunctionType | types.ModuleType):
            if _own_doc(obj) is None:
                undocumented.append(name)
        else:  # a type alias: documented by a '#:' comment above its definition
            source = inspect.getsource(_defining_module(name))
            before = source.split(f"\n{name} =", 1)[0].rsplit("\n", 1)[-1]
            if not before.startswith("#: "):
                undocumented.append(name)
    assert undocumented == []


def _defining_module(name: str) -> types.ModuleType:
    for module in (registry, meeting_types):
        if name in vars(module):
            return module
    raise AssertionError(f"where is {name} defined?")


def test_public_methods_are_documented() -> None:
    missing = []
    for name in agent_messaging.__all__:
        obj = getattr(agent_messaging, name)
        if not isinstance(obj, type) or issubclass(obj, BaseException):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_") or not (inspect.isfunction(value) or isinstance(value, property)):
                continue
            if not (value.__doc__ or "").strip():
                missing.append(f"{name}.{attr}")
    assert missing == []


def test_every_error_is_exported_and_in_the_tree() -> None:
    tree = errors.__doc__ or ""
    for name in errors.__all__:
        if not isinstance(getattr(errors, name), type):
            continue  # the JSON helpers
        assert name in agent_messaging.__all__, name
        assert name in tree, f"{name} is missing from the tree drawn in errors.py's docstring"
