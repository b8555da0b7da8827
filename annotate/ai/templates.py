"""Judge templates, rubrics and constitutions: YAML data files, versioned by content hash.

A name (`pairwise`) is looked up in the bundled `data/judge/`, `data/rubrics/` or `data/`; anything
with a slash or a suffix is read as a path. `guidelines` (stored on every row) is `name@hash`, where
the hash covers the file's parsed content, so an edited template is a different version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefkit.annotate.ai.engine import AIError
from prefkit.annotate.ids import content_hash

DATA = Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    data: dict[str, Any]
    hash: str

    @property
    def guidelines(self) -> str:
        return f"{self.name}@{self.hash[:12]}"

    def text(self, key: str, **values: str) -> str:
        """The template's `key` with `{placeholders}` filled (values are inserted, never re-parsed)."""
        if key not in self.data:
            raise AIError(f"{self.path}: no `{key}:` entry")
        try:
            return str(self.data[key]).format_map(values)
        except KeyError as exc:
            raise AIError(f"{self.path}: `{key}:` uses an unknown placeholder {exc}; known: {sorted(values)}") from None


def chat(
    template: Template,
    mode: str,
    schema: dict[str, Any],
    values: dict[str, str],
    suffix_values: dict[str, str] | None = None,
    logprobs: bool = False,
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """A judge-style request from `template`: its system and user messages, and the request options
    the mode asks for (first-token logprobs where the job reads them, or the JSON schema and the
    template's JSON instruction)."""
    user = template.text("user", **values)
    extra: dict[str, Any] = {}
    if mode == "logprobs" and logprobs:
        extra = {"logprobs": True, "top_logprobs": 5}
    elif mode == "json":
        user += "\n" + template.text("json_user_suffix", **(suffix_values or {}))
        extra = {"response_format": schema}
    return [{"role": "system", "content": template.text("system")}, {"role": "user", "content": user}], extra


def load(name_or_path: str | Path, folder: str) -> Template:
    """Load a template from `data/<folder>/<name>.yaml`, or from a path."""
    text = str(name_or_path)
    path = Path(text)
    if "/" not in text and not path.suffix:
        path = DATA / folder / f"{text}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (DATA / folder).glob("*.yaml"))
        raise AIError(f"no template {text!r}: not a file, and not one of the bundled {folder} files {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AIError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise AIError(f"{path}: expected a mapping of keys (name, system, user, …)")
    return Template(name=str(data.get("name") or path.stem), path=path, data=data, hash=content_hash(data))


def render_conversation(messages: list[dict[str, str]]) -> str:
    """A prompt as the judge sees it: the user's text alone, or a transcript for a longer conversation."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages)
