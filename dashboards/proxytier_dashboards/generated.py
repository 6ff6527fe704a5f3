"""Every file `python -m proxytier_dashboards generate` writes, in one list: the dashboards, the rules, the
runbook's console page, the README's alert table, and the formula's copies (salt/proxytier/ holds real files,
no symlink, so gitfs and copied formula directories work). `check` reports the stale ones."""

from __future__ import annotations

from pathlib import Path

from proxytier_dashboards import render, rules, runbook

DASHBOARDS = Path(__file__).resolve().parent.parent
REPO = DASHBOARDS.parent
RULES_FILE = DASHBOARDS / "rules" / "proxytier.rules.yml"
CONSOLE_PAGE = DASHBOARDS / "consoles" / rules.RUNBOOK_PAGE
FORMULA = REPO / "salt" / "proxytier"
FORMULA_RULES_TEMPLATE = FORMULA / "templates" / "monitoring" / "proxytier.rules.yml.jinja"
FORMULA_CONSOLE_PAGE = FORMULA / "files" / "monitoring" / rules.RUNBOOK_PAGE


def outputs() -> dict[Path, str]:
    """{path: content} of every generated file."""
    page = runbook.console_page(runbook.RUNBOOK.read_text(encoding="utf-8"))
    files = {render.OUTPUT_DIR / name: text for name, text in render.rendered().items()}
    files.update({
        RULES_FILE: rules.render(),
        FORMULA_RULES_TEMPLATE: rules.formula_template(),
        CONSOLE_PAGE: page,
        FORMULA_CONSOLE_PAGE: page,
        runbook.README: runbook.readme(runbook.README.read_text(encoding="utf-8")),
    })
    return files


def write() -> list[Path]:
    """Write every generated file; returns their paths."""
    written = []
    for path, content in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def stale() -> list[str]:
    """Repository-relative paths of the generated files that are missing or differ from what the generator
    produces now."""
    return [str(path.relative_to(REPO)) for path, content in outputs().items()
            if path.is_symlink() or not path.is_file() or path.read_text(encoding="utf-8") != content]
