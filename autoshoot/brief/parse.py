"""Turn a VLM's text answer into a valid ``Brief``: shared by the ``qwen`` and ``openai`` backends.

    answer text ─► extract_json ─► normalize_data ─► convert handle_box ─► Brief.from_data
                                                      │ invalid
                                                      ▼
                                 retry once with the errors (the backend does this)
                                                      │ still invalid
                                                      ▼
                                  fill_from_rules: failing fields come from ``rules``

Coordinate conventions of ``product.handle_box`` and ``product.grip_point`` in an answer:
- ``"pixels"``: absolute pixels of the image the model saw, after its resize (Qwen2.5-VL);
- ``"rel1000"``: 0..1000 relative to that image's width and height (Qwen3-VL).
Both become XYXY pixels of the INPUT image.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from autoshoot.brief.schema import Brief
from autoshoot.vocab import CATEGORIES, HANDLES, HOLD_POSES, SHOTS

logger = logging.getLogger(__name__)

COORD_CONVENTIONS = ("pixels", "rel1000")

# Common ways models spell enum values → the schema's value.
SYNONYMS: dict[str, dict[str, str]] = {
    "category": {
        "bag": "handbag",
        "purse": "handbag",
        "hand_bag": "handbag",
        "shoulder_bag": "handbag",
        "tote_bag": "tote",
        "shopper": "tote",
        "laptop": "laptop_bag",
        "laptopbag": "laptop_bag",
        "computer_bag": "laptop_bag",
        "rucksack": "backpack",
        "back_pack": "backpack",
        "duffel": "duffle",
        "duffel_bag": "duffle",
        "duffle_bag": "duffle",
        "holdall": "duffle",
        "messenger_bag": "messenger",
        "satchel": "messenger",
        "crossbody": "messenger",
        "luggage": "suitcase",
        "trolley": "suitcase",
        "brief_case": "briefcase",
    },
    "handle": {
        "top_handle": "top_loop",
        "single_handle": "top_loop",
        "handle": "top_loop",
        "loop": "top_loop",
        "two_handles": "twin_loops",
        "twin_handles": "twin_loops",
        "double_handles": "twin_loops",
        "dual_handles": "twin_loops",
        "strap": "strap_loop",
        "shoulder_strap": "strap_loop",
        "no_handle": "none",
        "null": "none",
    },
    "hold_pose": {
        "hip": "beside_hip",
        "at_hip": "beside_hip",
        "by_the_hip": "beside_hip",
        "beside_hips": "beside_hip",
        "front": "in_front",
        "in_front_of_body": "in_front",
        "crook": "forearm_crook",
        "elbow_crook": "forearm_crook",
        "forearm": "forearm_crook",
        "display": "raised_display",
        "raised": "raised_display",
        "over_shoulder": "shoulder_strap",
        "on_shoulder": "shoulder_strap",
        "cradle": "cradled",
        "underarm": "under_arm",
        "under_the_arm": "under_arm",
    },
    "shot": {
        "closeup": "close",
        "close_up": "close",
        "half": "half_body",
        "halfbody": "half_body",
        "half_body_shot": "half_body",
        "medium": "half_body",
        "medium_shot": "half_body",
        "full": "full_body",
        "fullbody": "full_body",
        "full_body_shot": "full_body",
        "full_length": "full_body",
    },
    "gender_presentation": {
        "female": "feminine",
        "woman": "feminine",
        "f": "feminine",
        "male": "masculine",
        "man": "masculine",
        "m": "masculine",
        "non_binary": "androgynous",
        "nonbinary": "androgynous",
        "neutral": "androgynous",
    },
}
ENUMS = {"category": CATEGORIES, "handle": HANDLES, "hold_pose": HOLD_POSES, "shot": SHOTS}


class AnswerError(ValueError):
    """The answer holds no JSON object at all."""


@dataclass
class ParseOutcome:
    """What ``parse_answer`` made of one answer. ``brief`` is None when it is invalid."""

    brief: Brief | None
    data: dict[str, Any] | None  # the normalized JSON (None when no object was found)
    errors: list[str] = field(default_factory=list)  # "path: message", for the retry prompt


# ---------------------------------------------------------------------------------------
# 1. text → dict


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in a model's answer: markdown fences, prose before or after,
    trailing commas, // comments and smart quotes are tolerated."""
    if not text or "{" not in text:
        raise AnswerError("the answer holds no JSON object; reply with one JSON object only")
    fenced = re.search(r"```(?:json|JSON)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    candidates = [fenced.group(1)] if fenced else []
    candidates.extend(_balanced_objects(text))
    last_error: Exception | None = None
    for candidate in candidates:
        for attempt in (candidate, _repair_json(candidate)):
            try:
                value = json.loads(attempt)
            except json.JSONDecodeError as err:
                last_error = err
                continue
            if isinstance(value, dict):
                return value
    raise AnswerError(f"the answer's JSON cannot be parsed ({last_error}); reply with valid JSON only")


def _outside_strings(text: str) -> tuple[list[tuple[int, str]], bool]:
    """Each character of ``text`` outside JSON strings, with its index (the quotes left out),
    and whether ``text`` ends inside a string (a cut-off answer)."""
    out: list[tuple[int, str]] = []
    in_string = escape = False
    for i, ch in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        else:
            out.append((i, ch))
    return out, in_string


def _balanced_objects(text: str) -> list[str]:
    """Substrings from each top-level ``{`` to its matching ``}`` (string-aware); an unclosed
    object at the end (a cut-off answer) is returned as is."""
    out: list[str] = []
    depth, start = 0, -1
    for i, ch in _outside_strings(text)[0]:
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                out.append(text[start : i + 1])
    if depth and start >= 0:
        out.append(text[start:])
    return out


def _repair_json(text: str) -> str:
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    text = re.sub(r"(?m)//[^\n\"]*$", "", text)  # // comments at line ends
    text = re.sub(r",\s*([}\]])", r"\1", text)  # trailing commas
    text = re.sub(r"\bNone\b", "null", text)
    text = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", text))
    # a cut-off answer: close open strings, arrays and objects
    stack: list[str] = []
    outside, in_string = _outside_strings(text)
    for _, ch in outside:
        if ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    if in_string:
        text += '"'
    if stack:
        text = re.sub(r",\s*$", "", text.rstrip()) + "".join(reversed(stack))
    return text


# ---------------------------------------------------------------------------------------
# 2. dict → normalized dict


def _enum_key(value: str) -> str:
    return re.sub(r"[\s\-/]+", "_", value.strip().lower())


def normalize_enum(name: str, value: Any) -> Any:
    """Lower-case, spaces/hyphens → underscores, known synonyms → schema values."""
    if not isinstance(value, str):
        return value
    key = _enum_key(value)
    key = SYNONYMS.get(name, {}).get(key, key)
    return key


def normalize_data(data: dict[str, Any]) -> dict[str, Any]:
    """Fix what models commonly get almost right, without guessing content."""
    data = copy.deepcopy(data)
    if isinstance(data.get("brief"), dict) and "product" not in data:  # {"brief": {...}}
        data = data["brief"]
    product = data.get("product")
    if isinstance(product, dict):
        for name in ("category", "handle"):
            if name in product:
                product[name] = normalize_enum(name, product[name])
        if product.get("handle") is None and "handle" in product:
            product["handle"] = "none"
        if isinstance(product.get("colours"), str):
            product["colours"] = [c.strip() for c in re.split(r",|/| and ", product["colours"]) if c.strip()]
        if "colors" in product and "colours" not in product:
            product["colours"] = product.pop("colors")
        size = product.get("size_cm")
        if isinstance(size, dict):
            size = [size.get("width", size.get("w")), size.get("height", size.get("h"))]
        if isinstance(size, str):
            numbers = re.findall(r"\d+(?:\.\d+)?", size)
            size = [float(n) for n in numbers[:2]] if len(numbers) >= 2 else size
        if isinstance(size, list):
            size = [_number(v) for v in size[:2]]
        if size is not None:
            product["size_cm"] = size
        box = product.get("handle_box")
        if isinstance(box, list):
            product["handle_box"] = [_number(v) for v in box]
    persona = data.get("persona")
    if isinstance(persona, dict):
        if "gender_presentation" in persona:
            persona["gender_presentation"] = normalize_enum(
                "gender_presentation", persona["gender_presentation"]
            )
        if isinstance(persona.get("age_range"), str):
            persona["age_range"] = _normalize_age(persona["age_range"])
        if isinstance(persona.get("garments"), str):
            persona["garments"] = [g.strip() for g in re.split(r";|,", persona["garments"]) if g.strip()]
        persona.setdefault("custom", None)
    for name in ("hold_pose", "shot"):
        if name in data:
            data[name] = normalize_enum(name, data[name])
    return data


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value.strip().rstrip("cm").strip())
        except ValueError:
            return value
    return value


def _normalize_age(text: str) -> str:
    """``"30-39"``, ``"early 30s"``, ``"30s"``, ``"35"`` → ``"30s"`` (left unchanged if unclear)."""
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    if not numbers:
        return text.strip()
    decade = numbers[0] // 10 * 10
    return f"{decade}s"


# ---------------------------------------------------------------------------------------
# 3. coordinates


def convert_box(
    box: list[float],
    convention: str,
    seen_size: tuple[int, int],
    input_size: tuple[int, int],
) -> list[float] | None:
    """A handle box from the model's convention → XYXY pixels of the input image.

    ``seen_size`` is (width, height) of the image the model saw; ``input_size`` is the
    original's. Returns None when the box is not 4 numbers or is empty after clipping.
    """
    if convention not in COORD_CONVENTIONS:
        raise ValueError(f"coordinate convention {convention!r}: use one of {', '.join(COORD_CONVENTIONS)}")
    if len(box) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        return None
    in_w, in_h = input_size
    if convention == "rel1000":
        sx, sy = in_w / 1000.0, in_h / 1000.0
    else:
        sx, sy = in_w / float(seen_size[0]), in_h / float(seen_size[1])
    x0, y0, x1, y1 = box
    x0, x1 = sorted((x0 * sx, x1 * sx))
    y0, y1 = sorted((y0 * sy, y1 * sy))
    x0, x1 = max(0.0, min(in_w, x0)), max(0.0, min(in_w, x1))
    y0, y1 = max(0.0, min(in_h, y0)), max(0.0, min(in_h, y1))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return [round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1)]


def convert_point(
    point: list[float],
    convention: str,
    seen_size: tuple[int, int],
    input_size: tuple[int, int],
) -> list[float] | None:
    """A grip point from the model's convention → (x, y) pixels of the input image; None when
    it is not 2 numbers or lies outside the image."""
    if len(point) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point):
        return None
    if convention not in COORD_CONVENTIONS:
        raise ValueError(f"coordinate convention {convention!r}: use one of {', '.join(COORD_CONVENTIONS)}")
    in_w, in_h = input_size
    if convention == "rel1000":
        sx, sy = in_w / 1000.0, in_h / 1000.0
    else:
        sx, sy = in_w / float(seen_size[0]), in_h / float(seen_size[1])
    x, y = point[0] * sx, point[1] * sy
    if not (0 <= x <= in_w and 0 <= y <= in_h):
        return None
    return [round(x, 1), round(y, 1)]


# ---------------------------------------------------------------------------------------
# 4. the whole parse, and the fallback


def validation_messages(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e.get("loc", ())) or "brief"
        msg = e.get("msg", "")
        ctx = e.get("ctx") or {}
        if e.get("type") == "literal_error" and "expected" in ctx:
            msg = f"must be one of {ctx['expected']}"
        out.append(f"{loc}: {msg}")
    return out


def parse_answer(
    text: str,
    convention: str,
    seen_size: tuple[int, int],
    input_size: tuple[int, int],
) -> ParseOutcome:
    """One answer → a valid brief, or the normalized data and the errors for a retry."""
    # 1. find the JSON object
    try:
        raw = extract_json(text)
    except AnswerError as err:
        return ParseOutcome(None, None, [str(err)])
    # 2. normalize enums, sizes, ages; convert the handle box to input pixels
    data = normalize_data(raw)
    product = data.get("product")
    if isinstance(product, dict) and isinstance(product.get("handle_box"), list):
        product["handle_box"] = convert_box(product["handle_box"], convention, seen_size, input_size)
    if isinstance(product, dict) and isinstance(product.get("grip_point"), list):
        product["grip_point"] = convert_point(product["grip_point"], convention, seen_size, input_size)
    # 3. validate
    try:
        return ParseOutcome(Brief.from_data(data), data, [])
    except ValidationError as err:
        return ParseOutcome(None, data, validation_messages(err))


def fill_from_rules(data: dict[str, Any] | None, rules: Brief) -> tuple[Brief, list[str]]:
    """Keep the valid fields of ``data`` and take the failing ones from the ``rules`` brief.

    Returns the brief and the dotted paths that came from ``rules`` (``["*"]`` when nothing
    of ``data`` could be used).
    """
    if not isinstance(data, dict):
        return rules, ["*"]
    fallback = rules.to_data()
    data = copy.deepcopy(data)
    filled: list[str] = []
    for _ in range(20):  # each round fixes at least one path; the schema has < 20 top fields
        try:
            brief = Brief.from_data(data)
            return brief, sorted(set(filled))
        except ValidationError as err:
            errors = err.errors()
        progressed = False
        for e in errors:
            loc = [p for p in e.get("loc", ()) if isinstance(p, str)]
            if not loc:  # a model-level rule (pose vs handle): take both from rules, they agree there
                for pair in (["product", "handle"], ["hold_pose"]):
                    path = _fill_path(data, fallback, pair)
                    if path:
                        filled.append(path)
                        progressed = True
                continue
            if e.get("type") == "extra_forbidden":
                if _delete_path(data, loc):
                    progressed = True
                continue
            path = _fill_path(data, fallback, loc)
            if path:
                filled.append(path)
                progressed = True
        if not progressed:
            break
    logger.warning("the answer could not be repaired field by field; using the rules brief")
    return rules, ["*"]


def _fill_path(data: dict[str, Any], fallback: dict[str, Any], loc: list[str]) -> str | None:
    """Copy the deepest field of ``loc`` that exists in the fallback (product.size_cm, persona, ...)."""
    for depth in range(len(loc), 0, -1):
        path = loc[:depth]
        source: Any = fallback
        ok = True
        for part in path:
            if isinstance(source, dict) and part in source:
                source = source[part]
            else:
                ok = False
                break
        if not ok:
            continue
        target = data
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        if target.get(path[-1]) == source:
            continue  # already the fallback's value: go one level up
        target[path[-1]] = copy.deepcopy(source)
        return ".".join(path)
    return None


def _delete_path(data: dict[str, Any], loc: list[str]) -> bool:
    target: Any = data
    for part in loc[:-1]:
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    if isinstance(target, dict) and loc[-1] in target:
        del target[loc[-1]]
        return True
    return False


# ---------------------------------------------------------------------------------------
# 5. the ask → parse → retry → fallback loop that every model backend runs


@dataclass
class Pending:
    """One request on its way through a model backend.

    ``image`` is the RGB PIL image as the model will see it (already resized for the
    ``pixels`` convention); ``input_size`` is the original's (width, height).
    ``history`` holds the turns after the first user turn (which carries image + instruction).
    """

    request: Any  # BriefRequest
    image: Any
    input_size: tuple[int, int]
    instruction: str
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text)
    answer: str = ""
    outcome: ParseOutcome | None = None
    error: str = ""

    @property
    def seen_size(self) -> tuple[int, int]:
        return tuple(self.image.size)  # type: ignore[return-value]


def describe_with_repair(
    pending: list[Pending],
    ask: Any,
    convention: str,
    backend: str,
    repair_retries: int = 1,
) -> list[Any]:
    """Run ``ask`` on every pending request, re-ask the invalid ones with their errors, and
    fill what is still invalid from ``rules``. Returns one ``BriefResult`` per request.

    ``ask(items: list[Pending]) -> list[str | BaseException]`` sends each item's first user
    turn (image + instruction) followed by ``item.history`` and returns the answer texts.
    """
    import time

    from autoshoot.brief.prompt import render_repair
    from autoshoot.brief.rules import rules_brief
    from autoshoot.brief.schema import BriefResult

    start = time.perf_counter()
    flags: dict[int, list[str]] = {i: [] for i in range(len(pending))}
    todo = list(range(len(pending)))
    for attempt in range(1 + max(0, repair_retries)):
        if not todo:
            break
        # 1. ask the model
        answers = ask([pending[i] for i in todo])
        # 2. parse each answer
        retry: list[int] = []
        for i, answer in zip(todo, answers, strict=True):
            item = pending[i]
            if isinstance(answer, BaseException):
                item.error = f"{type(answer).__name__}: {answer}"
                logger.warning("%s: the %s backend failed: %s", item.request.sku, backend, item.error)
                flags[i].append("vlm_error")
                continue  # a transport error is not retried here (the backend already retried)
            item.answer = answer
            item.outcome = parse_answer(answer, convention, item.seen_size, item.input_size)
            if item.outcome.brief is None:
                logger.info(
                    "%s: answer %d invalid: %s",
                    item.request.sku,
                    attempt + 1,
                    "; ".join(item.outcome.errors[:3]),
                )
                retry.append(i)
        # 3. the invalid ones get their errors back
        if attempt < repair_retries:
            for i in retry:
                item = pending[i]
                item.history = item.history + [
                    ("assistant", item.answer),
                    ("user", render_repair(item.outcome.errors)),
                ]
                flags[i].append("vlm_retry")
        todo = retry

    # 4. rules fills what is still invalid
    results = []
    elapsed = (time.perf_counter() - start) / max(1, len(pending))
    for i, item in enumerate(pending):
        outcome = item.outcome
        if outcome is not None and outcome.brief is not None:
            brief, filled = outcome.brief, []
        else:
            rules = rules_brief(item.request)
            brief, filled = fill_from_rules(outcome.data if outcome else None, rules)
            flags[i].append("brief_fallback")
            logger.warning("%s: fields from rules: %s", item.request.sku, ", ".join(filled))
        results.append(
            BriefResult(
                brief=brief,
                backend=backend,
                fallback_fields=filled,
                flags=sorted(set(flags[i])),
                raw=item.answer or item.error,
                seconds=elapsed,
            )
        )
    return results
