"""The built-in presets: YAML files shipped inside the package (``ganforge/presets/*.yaml``).

One source of truth: a checkout's ``configs/`` is a link to the same folder, so
``--config configs/dcgan-fashion-mnist.yaml`` and ``--config dcgan-fashion-mnist``
read the same file, from a checkout or from an installed wheel. Where
``configs/NAME.yaml`` does not exist (an installed package, another working
directory), the name is looked up among the built-in presets instead.

What a preset is for and what it reaches come from its own leading comment
(``ganforge presets`` prints them): the first sentence, and the line starting
``# Reaches:``. No torch here: ``ganforge presets`` and ``--help`` stay fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ganforge.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "presets"


@dataclass(frozen=True)
class PresetInfo:
    """A preset's name, file, purpose (its comment's first sentence) and ``Reaches:`` line."""

    name: str
    path: Path
    purpose: str
    reaches: str


def preset_names() -> list[str]:
    """Names of the built-in presets (file stems), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def builtin_preset(name: str) -> Path | None:
    """``presets/NAME.yaml`` when ``name`` (with or without ``.yaml``) is a built-in preset, else None."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        return None
    path = PRESET_DIR / f"{stem}.yaml"
    return path if path.is_file() else None


def find_preset(spec: str | Path, where: str = "--config") -> Path:
    """The config file ``spec`` names: an existing path, a built-in preset name, or ``configs/NAME.yaml``.

    A path that does not exist and names no preset comes back unchanged (the loader
    reports it as a missing file).

    Raises:
        ConfigError: (naming ``where``) a bare name (no folder, no ``.yaml``) that is no built-in preset.
    """
    path = Path(spec)
    if path.exists():
        return path
    if path.parent == Path(".") or path.parent.name == "configs":
        found = builtin_preset(path.name)
        if found is not None:
            return found
        if path.parent == Path(".") and not path.suffix:
            raise ConfigError(where, f"no config file {spec} and no built-in preset of that name; built-in "
                                     f"presets: {', '.join(preset_names())} (`ganforge presets` describes them)")
    return path


def _leading_comment(path: Path) -> list[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


# A sentence ends at ". " or ":" + space, but not after "al." / "e.g." / "i.e." / an initial.
_SENTENCE_END = re.compile(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\b[A-Z])\.(\s|$)")


def describe(path: Path) -> PresetInfo:
    """What the preset is for and what it reaches, read from its leading comment."""
    lines = _leading_comment(path)
    reaches = next((ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("reaches:")), "")
    prose = []
    for ln in lines:
        if not ln or ln.lower().startswith("reaches:"):
            break  # the first paragraph
        prose.append(ln)
    text = " ".join(prose)
    end = _SENTENCE_END.search(text)
    purpose = text[:end.start() + 1] if end else text
    return PresetInfo(path.stem, path, purpose, reaches or "not stated")


def all_presets() -> list[PresetInfo]:
    """Every built-in preset, described."""
    return [describe(PRESET_DIR / f"{name}.yaml") for name in preset_names()]
