"""House rules that code review alone cannot keep: abstract-or-final classes, a light
``import eqslax`` and a docstring on every public name.

The walk covers ``eqslax`` and every public subpackage (``eqslax.data`` and those that
follow), and all private modules below them for the subclass relation.
"""

import abc
import importlib
import inspect
import pathlib
import pkgutil
import subprocess
import sys

import pytest

import eqslax

ROOT = pathlib.Path(eqslax.__file__).parent

# The top-level package and its public subpackages, found without importing them.
PACKAGES = ["eqslax"] + sorted(
    f"eqslax.{info.name}"
    for info in pkgutil.iter_modules([str(ROOT)])
    if info.ispkg and not info.name.startswith("_")
)


def _import(name):
    """Import a module; optional subpackages whose extra is not installed are left out."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        if "pip install" in str(error):  # the documented error of an optional extra
            return None
        raise


def _all_modules():
    modules = [eqslax]
    for info in pkgutil.walk_packages([str(ROOT)], "eqslax."):
        if info.name == "eqslax.__main__":
            continue  # the command line entry point: importing it is harmless but pointless
        module = _import(info.name)
        if module is not None:
            modules.append(module)
    return modules


def _all_classes():
    """Every class defined in an eqslax module, public or private."""
    classes = {}
    for module in _all_modules():
        for value in vars(module).values():
            if inspect.isclass(value) and value.__module__ == module.__name__:
                classes[f"{value.__module__}.{value.__qualname__}"] = value
    return classes


def _public(package):
    """``{name: object}`` for the public classes and functions a package exports."""
    module = _import(package)
    if module is None:
        return {}
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    found = {}
    for name in names:
        value = getattr(module, name)
        if (inspect.isclass(value) or inspect.isfunction(value)) and getattr(
            value, "__module__", ""
        ).startswith("eqslax"):
            found[f"{package}.{name}"] = value
    return found


def _abstract_members(cls):
    """Abstract methods plus Equinox ``AbstractVar``/``AbstractClassVar`` fields."""
    return (
        set(getattr(cls, "__abstractmethods__", ()))
        | set(getattr(cls, "__abstractvars__", ()))
        | set(getattr(cls, "__abstractclassvars__", ()))
    )


def _eqslax_subclasses(cls, classes):
    return sorted(
        name for name, other in classes.items() if other is not cls and issubclass(other, cls)
    )


def test_packages_are_found():
    assert "eqslax.data" in PACKAGES
    assert "eqslax.AbstractNeuron" in _public("eqslax")
    assert "eqslax.data.randman" in _public("eqslax.data")


@pytest.mark.parametrize("package", PACKAGES)
def test_public_classes_are_abstract_or_final(package):
    """STYLE rule 1: ``Abstract*`` classes hold interfaces; concrete classes are never
    subclassed (customise by wrapping)."""
    classes = _all_classes()
    problems = []
    for name, cls in _public(package).items():
        if not inspect.isclass(cls):
            continue
        abstract = _abstract_members(cls)
        if cls.__name__.startswith("Abstract"):
            if not abstract:
                problems.append(f"{name} is named Abstract* but has no abstract member")
        else:
            if abstract:
                problems.append(f"{name} is concrete but leaves {sorted(abstract)} abstract")
            subclasses = _eqslax_subclasses(cls, classes)
            if subclasses:
                problems.append(f"{name} is concrete but subclassed by {subclasses}")
    assert not problems, "\n".join(problems)


def test_every_subclassed_class_is_abstract():
    """The same rule for private classes: a base class in eqslax is an ``Abstract*``."""
    classes = _all_classes()
    problems = []
    for name, cls in classes.items():
        subclasses = _eqslax_subclasses(cls, classes)
        if subclasses and not cls.__name__.lstrip("_").startswith("Abstract"):
            problems.append(f"{name} is subclassed by {subclasses} but is not Abstract*")
    assert not problems, "\n".join(problems)


def test_abstract_classes_cannot_be_instantiated():
    for name, cls in _public("eqslax").items():
        if inspect.isclass(cls) and cls.__name__.startswith("Abstract"):
            assert isinstance(cls, abc.ABCMeta), name
            with pytest.raises(TypeError):
                cls()


def test_the_rule_catches_a_violation():
    """The walk above is not vacuous: a subclass of a concrete class is found."""
    classes = dict(_all_classes())

    class Renamed(eqslax.LIF):
        pass

    Renamed.__module__ = "eqslax._fake"
    classes["eqslax._fake.Renamed"] = Renamed
    assert _eqslax_subclasses(eqslax.LIF, classes) == ["eqslax._fake.Renamed"]
    assert _abstract_members(eqslax.AbstractSurrogate) == {"derivative"}
    assert _abstract_members(eqslax.AbstractPopulation) >= {"shape", "frozen"}


def _generated_doc(cls):
    # Dataclasses (every eqx.Module) get ``Name(field: type, ...)`` when they have none.
    doc = cls.__dict__.get("__doc__") or ""
    return doc.startswith(f"{cls.__name__}(") and "\n" not in doc.strip()


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_have_docstrings(package):
    problems = []
    module = _import(package)
    if module is not None and not (module.__doc__ or "").strip():
        problems.append(f"{package} (module)")
    for name, value in _public(package).items():
        own = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        if not (own or "").strip() or (inspect.isclass(value) and _generated_doc(value)):
            problems.append(name)
    assert not problems, "no docstring: " + ", ".join(problems)


_HEAVY = ("flax", "torch", "matplotlib.pyplot")


def test_import_eqslax_is_light():
    """STYLE rule 7: optional and heavy dependencies are imported only on request."""
    code = (
        "import sys, eqslax, eqslax.data; "
        f"print(','.join(m for m in {_HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT.parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import eqslax imported {result.stdout.strip()}"
