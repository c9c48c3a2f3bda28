"""Jinja2 rendering of the templates in ``prompts/``: the VLM instruction and the render prompts.

Where the templates are found (``prompts_dir``), first hit wins:

    AUTOSHOOT_PROMPTS   a user's own folder (``--prompts DIR`` or ``run.prompts`` set it)
    autoshoot/prompts/  inside an installed wheel (setup.py maps the top-level prompts/ there)
    prompts/            the top-level folder of a source checkout or an editable install

``prompt_version()`` names the templates' version and content hash; the analyze stage puts it
in its cache key, so editing a template re-runs the briefs (and everything after them).

The render prompt follows the reference format (see DESIGN.md). It is longer than CLIP's 77
tokens: it is written as short sentences ending in ". ", and ``prompt_chunks`` splits it on
those boundaries for a chunked text encoder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

from autoshoot.brief.schema import AGE_RANGES, GENDER_PRESENTATIONS, Brief
from autoshoot.vocab import CATEGORIES, HANDLES, HOLD_POSES, SHOTS

# Bump when a template's meaning changes; the content hash is added automatically.
PROMPT_VERSION = "1"
TEMPLATES = ("vlm_instruction.j2", "vlm_repair.j2", "render_prompt.j2", "negative_prompt.j2")
PROMPTS_ENV = "AUTOSHOOT_PROMPTS"
PACKAGED_PROMPTS = Path(__file__).resolve().parents[1] / "prompts"  # a wheel's copy: autoshoot/prompts/
SOURCE_PROMPTS = Path(__file__).resolve().parents[2] / "prompts"  # the top-level folder


def has_templates(folder: Path) -> bool:
    return all((folder / name).is_file() for name in TEMPLATES)


def shipped_prompts_dir() -> Path:
    """The templates that come with autoshoot: a wheel's copy, else the source tree's prompts/."""
    return PACKAGED_PROMPTS if has_templates(PACKAGED_PROMPTS) else SOURCE_PROMPTS


def prompts_dir() -> Path:
    """The folder the templates are read from now (see the module docstring)."""
    user = os.environ.get(PROMPTS_ENV, "").strip()
    return Path(user).expanduser().resolve() if user else shipped_prompts_dir()


def use_prompts_dir(folder: str | Path) -> Path:
    """Read the templates from ``folder`` from now on (in this process and the workers it
    starts). It must hold every template; a missing one is named with the fix."""
    path = Path(folder).expanduser().resolve()
    missing = [name for name in TEMPLATES if not (path / name).is_file()]
    if missing:
        from autoshoot.errors import ConfigError

        raise ConfigError(
            f"--prompts {folder}: {', '.join(missing)} missing there; a prompts folder needs all of "
            f"{', '.join(TEMPLATES)}; fix: copy the shipped ones from {shipped_prompts_dir()} and edit them"
        )
    os.environ[PROMPTS_ENV] = str(path)
    return path


PROMPTS_DIR = shipped_prompts_dir()  # the shipped templates (the default)

POSE_HELP = (
    "beside_hip: arm hanging, bag beside the hip; in_front: bag held in front of the thighs; "
    "forearm_crook: elbow bent, handle in the hand at waist height; raised_display: bag lifted to chest height "
    "towards the camera; shoulder_strap: strap over the shoulder, hand on the strap; cradled: held against the "
    "body with both forearms; under_arm: tucked under the arm"
)

EXAMPLE_BRIEF: dict[str, Any] = {
    "product": {
        "category": "tote",
        "description": "tan pebbled-leather tote with two rolled handles",
        "colours": ["tan", "gold"],
        "material": "leather",
        "handle": "twin_loops",
        "size_cm": [38, 32],
        "handle_box": None,
    },
    "persona": {
        "gender_presentation": "feminine",
        "age_range": "30s",
        "skin_tone": "deep brown skin",
        "features": "high cheekbones and natural makeup",
        "build": "slim build",
        "hair": "short natural curls",
        "garments": ["cream silk blouse", "navy wide-leg trousers", "white leather sneakers"],
        "custom": None,
    },
    "setting": "a sunlit city street with pale stone facades, softly blurred",
    "lighting": "soft diffused daylight",
    "hold_pose": "forearm_crook",
    "shot": "full_body",
    "gaze": "looking at the camera",
    "expression": "relaxed natural smile",
    "rationale": "A mid-size tote reads best carried in the crook of the hand in a full-body shot, and navy and cream set off its tan leather.",
}


def _environment() -> Any:
    return _environment_for(prompts_dir())


@functools.lru_cache(maxsize=4)
def _environment_for(folder: Path) -> Any:
    import jinja2

    if not folder.is_dir():
        raise FileNotFoundError(
            f"the prompt templates are missing: {folder} does not exist; reinstall autoshoot"
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )
    env.filters["capitalize_first"] = lambda s: s[:1].upper() + s[1:] if s else s
    return env


def prompt_version() -> str:
    """``"<PROMPT_VERSION>-<sha of the templates>"``: part of the analyze stage's cache key
    (a user's own templates get their own key)."""
    return _prompt_version_for(prompts_dir())


@functools.lru_cache(maxsize=4)
def _prompt_version_for(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in TEMPLATES:
        digest.update(name.encode())
        digest.update((folder / name).read_bytes())
    return f"{PROMPT_VERSION}-{digest.hexdigest()[:10]}"


def _render(name: str, **variables: Any) -> str:
    text = _environment().get_template(name).render(**variables)
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def persona_suggestion(seed: int) -> str:
    """A short persona hint rotated by the seed, so that a VLM varies models across a catalog.

    It is the persona ``rules`` picks for the same seed, so a fallback agrees with the hint.
    """
    from autoshoot.brief.rules import pick_persona

    persona = pick_persona(random.Random(seed), "smart", product_is_dark=True)
    gender = persona["gender_presentation"]
    noun = {"feminine": "woman", "masculine": "man", "androgynous": "androgynous person"}[gender]
    pronoun = {"feminine": "her", "masculine": "his", "androgynous": "their"}[gender]
    return f"a {noun} in {pronoun} {persona['age_range']} with {persona['skin_tone']}"


def render_vlm_instruction(
    fields: dict[str, str], image_size: tuple[int, int], coords: str = "pixels", seed: int = 0
) -> str:
    """The user text sent with the product photo.

    ``fields``: catalog row values (title, category, brand, notes). ``image_size``: (width,
    height) of the image as the model sees it (after its resize). ``coords``: ``"pixels"``
    (Qwen2.5-VL: absolute pixels of that image) or ``"rel1000"`` (Qwen3-VL: 0..1000).
    """
    if coords not in ("pixels", "rel1000"):
        raise ValueError(f"coords {coords!r}: use 'pixels' or 'rel1000'")
    return _render(
        "vlm_instruction.j2",
        fields={k: (fields.get(k) or "").strip() for k in ("title", "category", "brand", "notes")},
        image_size=list(image_size),
        coords=coords,
        suggestion=persona_suggestion(seed),
        categories=list(CATEGORIES),
        handles=list(HANDLES),
        genders=list(GENDER_PRESENTATIONS),
        ages=list(AGE_RANGES),
        poses=list(HOLD_POSES),
        shots=list(SHOTS),
        pose_help=POSE_HELP,
        example=json.dumps(EXAMPLE_BRIEF, ensure_ascii=False),
    )


def render_repair(errors: list[str]) -> str:
    """The follow-up message after an answer that failed validation."""
    return _render("vlm_repair.j2", errors=errors[:12])


def render_prompt(brief: Brief) -> str:
    """The render prompt in the reference format, one line."""
    text = _render("render_prompt.j2", **brief.model_dump())
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"\s+([,.])", r"\1", text).strip()


def render_negative_prompt(brief: Brief | None = None) -> str:
    data = brief.model_dump() if brief is not None else {}
    return re.sub(r"\s+", " ", _render("negative_prompt.j2", **data)).strip()


def prompt_chunks(prompt: str, max_words: int = 45) -> list[str]:
    """Split a long prompt on sentence (". ") and then clause (", ") boundaries into chunks of at
    most ``max_words`` words (about 60-70 CLIP tokens), for encoders with a 77-token window."""
    chunks: list[str] = []
    current: list[str] = []
    for sentence in re.split(r"(?<=\.)\s+", prompt.strip()):
        pieces = [sentence]
        if len(sentence.split()) > max_words:
            pieces = [p.strip() for p in re.split(r"(?<=,)\s+", sentence)]
        for piece in pieces:
            words = len(piece.split())
            if current and len(" ".join(current).split()) + words > max_words:
                chunks.append(" ".join(current))
                current = []
            current.append(piece)
    if current:
        chunks.append(" ".join(current))
    return chunks
