"""One typed, frozen config: defaults in code, then a profile, then a file, then CLI flags.

    Config
      run      RunConfig       (this module)      candidates, seed, profile, device, offline
      analyze  AnalyzeConfig   (config/analyze.py) the brief: VLM backend, prompts, brands
      prepare  PrepareConfig   (config/prepare.py) geometry: segmenter, canvas, erase, placement
      render   RenderConfig    (config/render.py)  SDXL stage 1, stage 2, composite, models
      score    ScoreConfig     (config/score.py)   hand scorer weights, acceptance threshold

Each section module also holds ``PROFILES``: the overrides that the ``tiny`` and ``default``
profiles apply to it. A user profile is a TOML or YAML file (``--profile my.toml``) that may
name a built-in base with ``base = "default"``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

from autoshoot.config.analyze import PROFILES as _ANALYZE_PROFILES
from autoshoot.config.analyze import AnalyzeConfig
from autoshoot.config.prepare import PROFILES as _PREPARE_PROFILES
from autoshoot.config.prepare import PrepareConfig
from autoshoot.config.render import PROFILES as _RENDER_PROFILES
from autoshoot.config.render import RenderConfig
from autoshoot.config.score import PROFILES as _SCORE_PROFILES
from autoshoot.config.score import ScoreConfig
from autoshoot.errors import ConfigError

BUILTIN_PROFILES = ("default", "tiny")


@dataclass(frozen=True)
class RunConfig:
    profile: str = "default"
    candidates: int = 4  # images rendered per SKU
    seed: int = 0  # base seed; a catalog row's ``seed`` column overrides it per SKU
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    offline: bool = False  # never fetch models (also set by HF_HUB_OFFLINE=1)
    download_timeout_s: float = 30.0  # for http(s) images in the catalog
    max_image_pixels: int = 64_000_000  # larger images are refused as decompression bombs
    min_image_side: int = 256
    engine: str = "local"  # local | ray
    ray_address: str = ""  # "auto" joins a running cluster; empty starts a local Ray
    gpus: int = 0  # Ray workers to start (one per GPU); 0 = every GPU in the cluster
    retries: int = 2  # times a SKU whose worker died is retried on another worker
    # Ray: workers that only write the briefs (the VLM), batching across the whole catalog, so
    # that the other workers never load the VLM; 0 = each worker writes its own SKUs' briefs
    vlm_workers: int = 0
    prompts: str = ""  # a folder of prompt templates to use instead of the shipped prompts/ (--prompts)
    # GPU memory budget in GiB for every model of the run and its activations (autoshoot.budget,
    # autoshoot.run.models): "auto" = the GPU's free memory when the run starts; 0 = no limit
    vram: str | float = "auto"
    # while SKU i renders, prepare SKU i+1 and composite/score SKU i-1 in threads; auto = on
    # when rendering on a CUDA GPU
    overlap: Literal["auto", "on", "off"] = "auto"
    # with the overlap: SKUs in the GPU lane at once, and in composite/score at once (each GPU
    # model call takes its model's lock, so they take turns on the GPU while the other's CPU
    # work runs); 1 = one SKU renders at a time. 3: on an H200 (compiled, fp8), 6.13 s per SKU
    # against 6.97 s with 2 in the same job (README); GPU memory is the same, the calls take turns
    lanes: int = 3
    # reuse across runs (autoshoot.run.reuse): auto = an index beside the RUN folder
    # (<RUN's parent>/.autoshoot-reuse), off, or the path/URI of an index to share
    reuse: str = "auto"

    def __post_init__(self) -> None:
        from autoshoot.run.models import parse_vram

        parse_vram(self.vram)  # a clear message for a bad value, before any work


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    analyze: AnalyzeConfig = field(default_factory=AnalyzeConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_hash(self, *names: str) -> str:
        """Hash of the named sections (or dotted sub-sections), for stage cache keys."""
        parts = {name: _get_dotted(self.to_dict(), name) for name in names}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


_SECTION_PROFILES = {
    "analyze": _ANALYZE_PROFILES,
    "prepare": _PREPARE_PROFILES,
    "render": _RENDER_PROFILES,
    "score": _SCORE_PROFILES,
}


def builtin_profile(name: str) -> dict[str, Any]:
    if name not in BUILTIN_PROFILES:
        raise ConfigError(
            f"unknown profile {name!r}; valid names are: {', '.join(BUILTIN_PROFILES)}, "
            "or the path of a .toml/.yaml profile file"
        )
    overlay: dict[str, Any] = {"run": {"profile": name}}
    for section, profiles in _SECTION_PROFILES.items():
        if profiles.get(name):
            overlay[section] = copy.deepcopy(profiles[name])  # merging must not edit the table
    if name == "tiny":
        overlay["run"].update({"device": "cpu", "candidates": 2})
    return overlay


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {str(path)!r}: use a .toml, .yaml or .yml file")
    except ConfigError:
        raise
    except Exception as err:  # a parse error: say where
        raise ConfigError(f"config file {str(path)!r} cannot be parsed: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table/mapping at the top")
    return data


def load_config(
    profile: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """defaults → profile (built-in name, or a file with an optional ``base``) → file → overrides.

    ``overrides`` maps dotted keys to values, e.g. ``{"run.candidates": 8}``; CLI flags and
    ``--set key=value`` end up here.
    """
    layers: list[dict[str, Any]] = []
    file_data = read_config_file(config_file) if config_file else {}
    profile = profile or file_data.get("run", {}).get("profile") or "default"
    if profile in BUILTIN_PROFILES or Path(profile).suffix.lower() not in (".toml", ".yaml", ".yml"):
        layers.append(builtin_profile(profile))
    else:
        data = read_config_file(profile)
        base = data.pop("base", "default")
        layers.append(builtin_profile(base))
        data.setdefault("run", {})["profile"] = str(profile)
        layers.append(data)
    layers.append(file_data)
    dotted: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        _set_dotted(dotted, key, value)
    layers.append(dotted)
    merged: dict[str, Any] = {}
    for layer in layers:
        _deep_merge(merged, layer)
    apply_sampler_steps(merged, layers)
    return build(Config, merged, "")


def apply_sampler_steps(merged: dict[str, Any], layers: list[dict[str, Any]]) -> None:
    """A sampler brings its step counts (config.render.SAMPLERS): a layer that sets
    ``render.sampler`` also sets the steps, unless that layer or a later one sets them itself."""
    from autoshoot.config.render import SAMPLERS, STEP_KEYS

    last = None
    for n, layer in enumerate(layers):
        if isinstance(layer.get("render"), dict) and "sampler" in layer["render"]:
            last = n
    if last is None or merged["render"]["sampler"] not in SAMPLERS:
        return  # the default sampler, or an unknown name (the config check names the valid ones)
    preset = SAMPLERS[merged["render"]["sampler"]]
    for key in STEP_KEYS:
        if not any(
            isinstance(layer.get("render"), dict) and key in layer["render"] for layer in layers[last:]
        ):
            merged["render"][key] = preset[key]


def parse_set_option(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["render.steps=20", "run.offline=true"]`` → ``{"render.steps": 20, ...}`` (YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write it as section.key=value, e.g. render.steps=20")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def save_config(config: Config, path: Path) -> None:
    import yaml

    from autoshoot.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


# ---------------------------------------------------------------------------------------
# dict → dataclass with type checks and "valid keys are ..." errors


def build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key {_join(where, unknown[0])!r}; valid keys in "
            f"{where or 'the config'} are: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name in data:
        kwargs[name] = _coerce(hints[name], data[name], _join(where, name))
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if is_dataclass(hint):
        return build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(
                f"{where}: {value!r} is not allowed; allowed values are: "
                + ", ".join(repr(a) for a in allowed)
            )
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(a, v, where) for a, v in zip(args, value))
        item = args[0] if args else Any
        out = [_coerce(item, v, where) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        _, vt = typing.get_args(hint) or (Any, Any)
        return {str(k): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected text, got {value!r}")
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_merge(dst[key], value)
        else:
            dst[key] = value


def _set_dotted(dst: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        dst = dst.setdefault(part, {})
    dst[parts[-1]] = value


def _get_dotted(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data
