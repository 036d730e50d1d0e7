"""Check that the public API stays documented and annotated (run by CI: ``.ci/run``).

The public API is every name in ``__all__`` of ``skdynamo`` and of its public
subpackages (``PUBLIC_MODULES``). For each public function, each public class's
constructor, and each public method or property a public class defines itself (what it
inherits from scikit-learn or ``torch.nn.Module`` is theirs):

- a docstring, with a ``Parameters`` section when it takes parameters and a ``Returns``
  section when it returns something (``-> None`` and properties need none);
- annotations on every parameter (``self``/``cls`` excepted) and on the return value.

numpydoc's validation in the Sphinx build (``docs/conf.py``) checks the content of the
docstrings of what the API reference lists; this script catches a public callable that
the reference does not list, and missing annotations, which numpydoc does not check.

    python tools/check_public_api.py            # fails (status 1) listing each problem
    python tools/check_public_api.py --report   # coverage counts, also for private code
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PUBLIC_MODULES = (
    "skdynamo",
    "skdynamo.baselines",
    "skdynamo.datasets",
    "skdynamo.dynamics",
    "skdynamo.families",
    "skdynamo.nn",
    "skdynamo.plotting",
    "skdynamo.utils.dask",
    "skdynamo.utils.estimator_checks",
    "skdynamo.utils.validation",
)

# Exceptions, each with its reason (keep in step with numpydoc_validation_exclude in
# docs/conf.py).
EXCLUDE = {
    # Methods of the model-family protocol: developer API, documented in prose by
    # ModelFamily and docs/developers.md, overridden by each family without repeating it.
    r"^skdynamo\.families\.\w*Family\.\w+$": "model-family protocol methods",
}


from sklearn.base import BaseEstimator  # noqa: E402


def _sections(doc):
    return set(re.findall(r"^\s*(\w[\w ]*)\n\s*-{3,}\s*$", doc or "", flags=re.M))


def _check_callable(qualname, fn, *, is_property=False, is_init=False, doc_owner=None,
                    annotations=True):
    """Problems of one function, method, constructor or property."""
    problems = []
    target = fn.fget if is_property else fn
    doc = inspect.getdoc(doc_owner if doc_owner is not None else target)
    if not doc:
        return [f"{qualname}: no docstring"]
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return problems
    params = [p for n, p in sig.parameters.items() if n not in ("self", "cls")]
    for p in params if annotations else ():
        if p.annotation is inspect.Parameter.empty:
            problems.append(f"{qualname}: parameter {p.name!r} has no annotation")
    if annotations and sig.return_annotation is inspect.Signature.empty:
        problems.append(f"{qualname}: no return annotation")
    if is_property:
        return problems
    sections = _sections(doc)
    if params and "Parameters" not in sections:
        problems.append(f"{qualname}: docstring has no Parameters section")
    returns_none = sig.return_annotation in (None, "None")
    if not is_init and not returns_none and not sections & {"Returns", "Yields"}:
        problems.append(f"{qualname}: docstring has no Returns section")
    return problems


def _excluded(qualname):
    return any(re.match(pattern, qualname) for pattern in EXCLUDE)


def public_callables():
    """``(qualname, problems)`` for every public callable, each listed once."""
    seen, results = set(), []
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            qualname = f"{modname}.{name}"
            if id(obj) in seen or _excluded(qualname):
                continue
            if inspect.isclass(obj):
                seen.add(id(obj))
                results.extend(_check_class(qualname, obj))
            elif inspect.isfunction(obj):
                seen.add(id(obj))
                results.append((qualname, _check_callable(qualname, obj)))
    return results


def _check_class(qualname, cls):
    results = []
    if not inspect.getdoc(cls):
        results.append((qualname, [f"{qualname}: no docstring"]))
    if "__init__" in vars(cls):
        # numpydoc style: the constructor's parameters are documented on the class. The
        # constructors of scikit-learn estimators are not annotated, as in scikit-learn:
        # their parameter types are declared once, in ``_parameter_constraints``, which
        # fit validates (annotations would be a second, unchecked copy).
        results.append((f"{qualname}.__init__",
                        _check_callable(f"{qualname}.__init__", cls.__init__, is_init=True,
                                        doc_owner=cls,
                                        annotations=not issubclass(cls, BaseEstimator))))
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        name = f"{qualname}.{attr}"
        if _excluded(name):
            continue
        if isinstance(value, property):
            results.append((name, _check_callable(name, value, is_property=True)))
        elif isinstance(value, (staticmethod, classmethod)):
            results.append((name, _check_callable(name, value.__func__)))
        elif inspect.isfunction(value):
            if value.__name__ != attr:  # an alias of another method (step = ...)
                continue
            results.append((name, _check_callable(name, value)))
    return results


def _package_coverage():
    """Annotated functions among every ``def`` of the package (private included)."""
    total = annotated = 0
    for path in sorted((ROOT / "skdynamo").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                total += 1
                args = [a for a in (*node.args.posonlyargs, *node.args.args,
                                    *node.args.kwonlyargs) if a.arg not in ("self", "cls")]
                if node.returns is not None and all(a.annotation is not None for a in args):
                    annotated += 1
    return annotated, total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="print coverage counts")
    args = parser.parse_args(argv)
    results = public_callables()
    problems = [p for _, ps in results for p in ps]
    if args.report:
        annotated = sum(not any("annotation" in p for p in ps) for _, ps in results)
        documented = sum(not any("docstring" in p for p in ps) for _, ps in results)
        a, t = _package_coverage()
        print(f"public callables: {len(results)}; fully annotated: {annotated}; "
              f"docstring complete: {documented}")
        print(f"every def in skdynamo/ (private included): {a} of {t} fully annotated")
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in the public API; see tools/check_public_api.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
