"""The layering is enforced: import-linter contracts (pyproject ``[tool.importlinter]``) and
no private name imported across modules."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "masnn"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy_tree(dst: Path) -> Path:
    shutil.copytree(PACKAGE, dst / "masnn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_import_contracts_hold_and_catch_an_upward_import(tmp_path: Path) -> None:
    pytest.importorskip("importlinter")
    ok = _lint(_copy_tree(tmp_path / "ok"))
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
    assert "0 broken" in ok.stdout
    # a lower layer importing a higher one breaks the build (even inside a function)
    bad = _copy_tree(tmp_path / "bad")
    spatial = bad / "masnn" / "attention" / "spatial.py"
    spatial.write_text(spatial.read_text() + "\n\ndef _f() -> None:\n    import masnn.layers\n")
    schema = bad / "masnn" / "events" / "schema.py"
    schema.write_text(schema.read_text() + "\nimport masnn.train.config  # noqa\n")
    res = _lint(bad)
    assert res.returncode == 1, res.stdout[-3000:]
    assert "masnn.attention.spatial -> masnn.layers" in res.stdout
    assert "masnn.events.schema -> masnn.train.config" in res.stdout


def _package_of(mod: str, is_pkg: bool) -> str:
    return mod if is_pkg else mod.rpartition(".")[0]


def private_imports(package_dir: Path) -> list[str]:
    """``file:line: what`` for every import of a private name, or of a private module from
    outside the package that holds it."""
    out = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        here = _package_of(".".join(parts), is_pkg)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [(node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            for module, name in targets:
                if not module.startswith("masnn"):
                    continue
                where = f"{path.relative_to(package_dir.parent)}:{node.lineno}"
                sub = package_dir.parent.joinpath(*module.split("."), name or "")
                own_submodule = (sub.with_suffix(".py").is_file() or sub.is_dir()) and (
                    here == module or here.startswith(module + ".")
                )  # `from pkg import _impl` inside pkg: a private module of its own package
                if (
                    name
                    and name.startswith("_")
                    and not name.startswith("__")
                    and not own_submodule
                ):
                    out.append(f"{where}: private name {name!r} from {module}")
                comps = module.split(".")
                for k, c in enumerate(comps):
                    owner = ".".join(comps[:k])
                    if c.startswith("_") and not (here == owner or here.startswith(owner + ".")):
                        out.append(f"{where}: private module {module} from outside {owner}")
    return out


def test_no_private_names_cross_modules(tmp_path: Path) -> None:
    assert private_imports(PACKAGE) == []
    # the check itself: a private name, and a private module from another package, are caught
    pkg = tmp_path / "masnn"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from masnn.a._impl import thing\n")
    (pkg / "b.py").write_text("from masnn.a import _hidden\nfrom masnn.a._impl import thing\n")
    found = private_imports(pkg)
    assert len(found) == 2, found
    assert "private name '_hidden'" in found[0] and "private module masnn.a._impl" in found[1]


def test_package_ships_py_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()
