"""docs/stack-config.md, the reference of every ``hyperfleet:*`` stack config key, made from the models
of config.py: each field's docstring (its description), default and allowed values.

    python -m infra.stack_config_doc            # writes docs/stack-config.md (make docs)
    python -m infra.stack_config_doc --check    # exits 1 when docs/stack-config.md is not what it makes

tests/infra/test_stack_config_doc.py fails when the file is stale.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from infra import config

DOC = Path(__file__).resolve().parent.parent / "docs" / "stack-config.md"
HEADER = """# Stack configuration

<!-- Made by infra/stack_config_doc.py from the models of infra/config.py: edit those, then run
     `make docs`. -->

Every key of a stack's config (`Pulumi.<stack>.yaml`), namespace `hyperfleet`: `hyperfleet:workers`
holds `{replicas: 4, heartbeatSeconds: 2, ...}`. A bad value fails `pulumi preview` with a message that
names the key. The models and their rules: `infra/config.py`.
"""
#: keys read as Pulumi secrets, not into the models (config.SECRET_KEYS)
SECRETS = {"dashboardToken": "a secret (`pulumi config set --secret`): the dashboard's actions need it; unset, "
                             "they are off"}


def _model(annotation) -> type[BaseModel] | None:
    """The config model a field holds (``X`` or ``X | None``), if it is one of config.py's."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, config._Model):
            return candidate
    return None


def _item_model(annotation) -> type[BaseModel] | None:
    """The config model a list's items may be (``list[str | X]``: each X's keys get rows of their own)."""
    if typing.get_origin(annotation) is not list:
        return None
    pending = list(typing.get_args(annotation))
    while pending:
        candidate = pending.pop()
        if isinstance(candidate, type) and issubclass(candidate, config._Model):
            return candidate
        pending += [a for a in typing.get_args(candidate) if isinstance(a, type) or typing.get_args(a)]
    return None


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory else field.default
    if value is None or value is PydanticUndefined:
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value in ([], {}):
        return ""
    return f"`{value}`"


def _values(annotation) -> str:
    """The allowed values of a Literal field (``a | b``), else ''."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(candidate) is typing.Literal:
            return " \\| ".join(f"`{v}`" for v in typing.get_args(candidate))
    return ""


def _text(field) -> str:
    return " ".join((field.description or "").split()).replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        nested = _model(field.annotation)
        if nested:
            if field.description:
                rows.append(f"| `{key}` | | | {_text(field)} |")
            rows += _rows(nested, key + ".")
        else:
            rows.append(f"| `{key}` | {_default(field)} | {_values(field.annotation)} | {_text(field)} |")
            item = _item_model(field.annotation)
            if item:
                rows += _rows(item, key + "[].")
    return rows


def render() -> str:
    parts = [HEADER]
    for name, field in config.StackConfig.model_fields.items():
        key = field.alias or name
        parts.append(f"\n## hyperfleet:{key}\n\n{' '.join((field.description or '').split())}\n")
        nested = _model(field.annotation)
        if nested:
            parts.append("\n| key | default | values | |\n|---|---|---|---|\n" + "\n".join(_rows(nested)) + "\n")
        else:
            facts = [f"Default: {_default(field)}." if _default(field) else "", f"Values: {_values(field.annotation)}."
                     if _values(field.annotation) else ""]
            if any(facts):
                parts.append("\n" + " ".join(f for f in facts if f) + "\n")
    for key, text in SECRETS.items():
        parts.append(f"\n## hyperfleet:{key}\n\n{text}\n")
    return "".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is stale: run make docs", file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
