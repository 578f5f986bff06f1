"""Which library code a run executes, and its hash as what the code does (comments and docstrings left out).

The modules a stage's notebook imports are followed through every ``import`` inside reidlib (top-level and inside
functions, read with ``ast``; nothing is imported to find them), with the package ``__init__`` files Python runs on
the way; a run that builds one registered model leaves the other model families' files out, and the runner
(``reidlib/pipeline/``) is never hashed. Each file counts by :func:`normalised_code`.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import json
from functools import lru_cache
from pathlib import Path

from reidlib.paths import REPO_ROOT

PACKAGE_DIR = REPO_ROOT / "reidlib"
RUNNER_DIR = PACKAGE_DIR / "pipeline"


# ----------------------------------------------------------------------------------------------------------------
# which library files a run executes
# ----------------------------------------------------------------------------------------------------------------
def module_file(name: str) -> Path | None:
    """The file of reidlib module ``name`` (``reidlib.engine.trainer``), or None if it is not one."""
    if name != "reidlib" and not name.startswith("reidlib."):
        return None
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module an AST imports (``from X import Y`` counts ``X`` and ``X.Y``)."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@lru_cache(maxsize=None)
def _imports_of(path: Path, mtime_ns: int) -> frozenset[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return frozenset(_imported_names(tree, _module_name(path), path.name == "__init__.py"))


def import_closure(roots: set[str]) -> list[Path]:
    """Every reidlib file that importing the modules ``roots`` can execute (parents' ``__init__`` included)."""
    seen: set[Path] = set()
    todo = [n for root in roots for n in _with_parents(root)]
    while todo:
        path = module_file(todo.pop())
        if path is None or path in seen or RUNNER_DIR in path.parents:  # the runner is never hashed
            continue
        seen.add(path)
        for name in _imports_of(path, path.stat().st_mtime_ns):
            todo.extend(_with_parents(name))
    return sorted(seen)


def notebook_imports(notebook: Path) -> set[str]:
    """Modules imported by a notebook's code cells (IPython magics skipped)."""
    nb = json.loads(notebook.read_text())
    names: set[str] = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", []))
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        names |= _imported_names(ast.parse(code), "__notebook__", False)
    return names


def model_family_files() -> dict[str, Path]:
    """Each registered model name -> the file that defines its family (e.g. ``reidlib/models/osnet.py``)."""
    from reidlib.models.registry import get_entry, list_models

    return {name: Path(inspect.getfile(get_entry(name).factory)).resolve() for name in list_models()}


def library_files(stage: str, model_name: str | None = None) -> list[Path]:
    """reidlib's sources a run of ``stage`` executes (see the module docstring for the rules)."""
    from .plan import STAGES

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
    files = import_closure(notebook_imports(REPO_ROOT / "notebooks" / f"{stage}.ipynb"))
    families = model_family_files() if model_name is not None else {}
    if model_name in families:
        others = {p for name, p in families.items() if p != families[model_name]}
        files = [p for p in files if p not in others]
    return files


class _DropDocstrings(ast.NodeTransformer):
    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None  # a bare string statement (docstring or attribute note) does nothing when run
        return node


def normalised_code(source: str, filename: str = "<source>") -> str:
    """``source`` as Python runs it: the AST with every bare string statement (docstrings) removed, written back
    by ``ast.unparse`` (so comments, blank lines, line breaks, quotes and spacing are gone)."""
    tree = _DropDocstrings().visit(ast.parse(source, filename=filename))
    return ast.unparse(tree)


@lru_cache(maxsize=None)
def _code_digest(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(normalised_code(path.read_text(), str(path)).encode()).hexdigest()


def code_digest(path: Path) -> str:
    """sha256 of :func:`normalised_code` of the file at ``path`` (cached while the file is unchanged)."""
    st = path.stat()
    return _code_digest(path, st.st_mtime_ns, st.st_size)


def library_hash(stage: str, model_name: str | None = None) -> str:
    """Hash of what :func:`library_files` do: a change to code a run executes makes it stale; a change to its
    comments, docstrings or layout does not."""
    h = hashlib.sha256()
    for p in sorted(library_files(stage, model_name)):
        h.update(f"{p.relative_to(REPO_ROOT)}\0{code_digest(p)}\n".encode())
    return h.hexdigest()
