"""Study specs: one factor of a base config varied over a few settings, everything else held fixed.

A spec is a small JSON (or YAML) file:

    {"name": "kernel_size", "title": "Kernel size", "factor": "kernel_size",
     "question": "Does a wider kernel help?",
     "base": "base.json",                     # or an inline {"hyperparameters": {...}, "seeds": [...]}
     "base_overrides": {},                    # optional changes to the base, shared by every setting
     "settings": [{"label": "3x3", "kernel_size": 3}, {"label": "5x5", "kernel_size": 5}],
     "adjustments": {"pooling": "why this second key must change with the factor"},   # optional
     "seeds": 3}                              # optional: a count or a list; default: the base's seeds

A setting may set only the factor and the keys declared under "adjustments" (each with the reason
the report prints). A spec whose settings vary anything else varies more than one factor and is refused.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"
BASE_FILE = "base.json"
DEFAULT_SEEDS = (0, 1, 2)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
SPEC_KEYS = {"name", "title", "question", "factor", "base", "base_overrides", "settings", "adjustments", "seeds"}


class StudyError(ValueError):
    """A study spec that cannot be run; the message names the file and the key."""


@dataclass(frozen=True)
class Setting:
    label: str
    overrides: dict

    def value(self, factor: str):
        return self.overrides[factor]


@dataclass
class Study:
    name: str
    factor: str
    settings: list[Setting]
    base: dict
    seeds: list[int]
    title: str = ""
    question: str = ""
    adjustments: dict[str, str] = field(default_factory=dict)
    source: str = "<inline>"

    def hyperparameters(self, setting: Setting, seed: int) -> dict:
        """The complete hyperparameters of one run: base, then the setting, then the seed."""
        merged = dict(self.base)
        merged.update(setting.overrides)
        merged["seed"] = seed
        return merged

    def with_changes(self, seeds: list[int] | None = None, base_overrides: dict | None = None) -> "Study":
        """The same study with another seed set or shared base values (e.g. fewer epochs for a demo)."""
        overrides = dict(base_overrides or {})
        varied = ({self.factor} | set(self.adjustments)) & set(overrides)
        if varied:
            raise StudyError(f"study '{self.name}': cannot override {sorted(varied)} for every setting: "
                             f"the study varies '{self.factor}'" + (
                                 f" and adjusts {sorted(self.adjustments)}" if self.adjustments else ""))
        data = self.to_dict()
        data["base"] = {"hyperparameters": {**self.base, **overrides}, "seeds": list(seeds or self.seeds)}
        data.pop("seeds")
        return study_from_dict(data, self.source)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "title": self.title, "question": self.question, "factor": self.factor,
            "base": {"hyperparameters": dict(self.base)}, "seeds": list(self.seeds),
            "adjustments": dict(self.adjustments),
            "settings": [{"label": s.label, **s.overrides} for s in self.settings],
        }


def _load_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StudyError(f"{path}: cannot read study spec ({exc.strerror})") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise StudyError(f"{path}: YAML specs need PyYAML (pip install pyyaml); "
                             "or write the spec as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise StudyError(f"{path}: not valid YAML ({exc})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StudyError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StudyError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _resolve_base(data: dict, source: str, spec_dir: Path) -> tuple[dict, list]:
    base = data.get("base", BASE_FILE)
    if isinstance(base, str):
        candidates = [spec_dir / base, STUDIES_DIR / base]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise StudyError(f"{source}: 'base' names {base!r}, found neither in {spec_dir} nor in {STUDIES_DIR}")
        base = _load_file(found)
        source_base = str(found)
    else:
        source_base = source
    if not isinstance(base, dict) or not isinstance(base.get("hyperparameters"), dict):
        raise StudyError(f"{source_base}: the base needs a 'hyperparameters' mapping, got {base!r:.80}")
    return dict(base["hyperparameters"]), base.get("seeds", list(DEFAULT_SEEDS))


def _parse_seeds(value, source: str) -> list[int]:
    if isinstance(value, bool):
        raise StudyError(f"{source}: 'seeds': expected a count or a list of integers, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise StudyError(f"{source}: 'seeds': expected at least 1 seed, got {value}")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if len(set(value)) != len(value):
            raise StudyError(f"{source}: 'seeds': seeds must be distinct, got {value}")
        return list(value)
    raise StudyError(f"{source}: 'seeds': expected a count or a non-empty list of integers, got {value!r}")


def _check_one_factor(name: str, source: str, factor: str, settings: list[Setting], adjustments: dict) -> None:
    allowed = {factor} | set(adjustments)
    extra: dict[str, list[str]] = {}
    for setting in settings:
        if factor not in setting.overrides:
            raise StudyError(f"{source}: study '{name}': setting '{setting.label}' does not set the factor '{factor}'")
        for key in setting.overrides:
            if key not in allowed:
                extra.setdefault(key, []).append(setting.label)
    if extra:
        varied = [factor] + sorted(extra)
        raise StudyError(
            f"{source}: study '{name}' varies {len(varied)} factors: {', '.join(repr(k) for k in varied)} "
            f"(set in settings {sorted({label for labels in extra.values() for label in labels})}); a study varies "
            f"exactly one factor. Split it into one study per factor, move values shared by every setting to "
            f"'base_overrides', or, when a key must change with the factor for a fair comparison, declare it "
            f"under 'adjustments' with the reason")
    values = [json.dumps(s.overrides[factor], sort_keys=True) for s in settings]
    if len(set(values)) != len(values):
        raise StudyError(f"{source}: study '{name}': two settings give '{factor}' the same value ({values})")
    labels = [s.label for s in settings]
    if len(set(labels)) != len(labels):
        raise StudyError(f"{source}: study '{name}': setting labels must be distinct, got {labels}")


def _validate_hyperparameters(study: Study) -> None:
    from ..hyperparameters import parse_hyperparameters
    from ..models import ConfigError

    for setting in study.settings:
        try:
            _, config = parse_hyperparameters(study.hyperparameters(setting, study.seeds[0]))
            config.validate()
        except ConfigError as exc:
            raise StudyError(f"{study.source}: study '{study.name}', setting '{setting.label}': {exc}") from None


def study_from_dict(data: dict, source: str = "<inline>", spec_dir: Path | None = None) -> Study:
    """Build and check a Study from its spec mapping; every problem raises StudyError naming `source`."""
    unknown = sorted(set(data) - SPEC_KEYS)
    if unknown:
        raise StudyError(f"{source}: unknown key(s) {unknown}; a study spec has {sorted(SPEC_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise StudyError(f"{source}: 'name': expected lower-case letters, digits, '_' or '-', got {name!r}")
    factor = data.get("factor")
    if not isinstance(factor, str) or not factor:
        raise StudyError(f"{source}: 'factor': expected the hyperparameter the study varies, got {factor!r}")
    adjustments = data.get("adjustments", {})
    if not isinstance(adjustments, dict) or not all(isinstance(v, str) and v.strip() for v in adjustments.values()):
        raise StudyError(f"{source}: 'adjustments': expected a mapping from hyperparameter to the reason it "
                         f"changes with '{factor}', got {adjustments!r}")
    if factor in adjustments:
        raise StudyError(f"{source}: 'adjustments' lists the factor '{factor}' itself")
    raw_settings = data.get("settings")
    if not isinstance(raw_settings, list) or len(raw_settings) < 2:
        raise StudyError(f"{source}: 'settings': expected a list of at least 2 settings, got {raw_settings!r:.80}")
    settings = []
    for index, raw in enumerate(raw_settings):
        if not isinstance(raw, dict):
            raise StudyError(f"{source}: settings[{index}]: expected a mapping, got {raw!r}")
        overrides = {k: v for k, v in raw.items() if k != "label"}
        label = raw.get("label") or f"{factor}={overrides.get(factor)}"
        settings.append(Setting(str(label), overrides))
    _check_one_factor(name, source, factor, settings, adjustments)

    base, base_seeds = _resolve_base(data, source, spec_dir or STUDIES_DIR)
    shared = data.get("base_overrides", {})
    if not isinstance(shared, dict):
        raise StudyError(f"{source}: 'base_overrides': expected a mapping, got {shared!r}")
    base.update(shared)
    base.pop("seed", None)
    study = Study(name=name, factor=factor, settings=settings, base=base,
                  seeds=_parse_seeds(data.get("seeds", base_seeds), source),
                  title=str(data.get("title") or name), question=str(data.get("question") or ""),
                  adjustments=dict(adjustments), source=source)
    _validate_hyperparameters(study)
    return study


def load_study(path: str | Path) -> Study:
    path = Path(path)
    return study_from_dict(_load_file(path), str(path), path.parent)


def builtin_names() -> list[str]:
    """Names of the studies shipped in training/studies/, in the order a full run takes them."""
    names = [p.stem for p in sorted(STUDIES_DIR.glob("*.json")) if p.name != BASE_FILE]
    order = _load_file(STUDIES_DIR / BASE_FILE).get("order", [])
    return [n for n in order if n in names] + [n for n in names if n not in order]


def resolve_study(name_or_path: str) -> Study:
    """A built-in study by name, or a spec file by path."""
    path = Path(name_or_path)
    if path.suffix in (".json", ".yaml", ".yml") or path.is_file():
        return load_study(path)
    builtin = STUDIES_DIR / f"{name_or_path}.json"
    if name_or_path == Path(BASE_FILE).stem or not builtin.is_file():
        raise StudyError(f"no built-in study {name_or_path!r}; built-in studies: {', '.join(builtin_names())} "
                         "(or give the path of a spec file)")
    return load_study(builtin)
