"""``rules``: a deterministic brief without any model.

It reads the catalog columns (title, category, notes), looks at the image (dominant colours
by k-means, the product's aspect ratio) and picks persona, garments, setting, pose and shot
from curated tables, rotated by a seed derived from the SKU so that a catalog is varied.
It is the default when no VLM is configured and fills the fields a VLM got wrong.
"""

from __future__ import annotations

import colorsys
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoshoot.brief.schema import (
    AGE_RANGES,
    GENDER_PRESENTATIONS,
    Brief,
    BriefRequest,
    BriefResult,
    open_rgb,
)
from autoshoot.vocab import CATEGORIES, HANDLES

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# Tables

# keyword (regex on title + notes, lower case) → category; the first match wins
CATEGORY_WORDS: tuple[tuple[str, str], ...] = (
    (r"laptop|notebook bag|computer bag", "laptop_bag"),
    (r"brief ?case|attach[eé]|document bag|portfolio bag", "briefcase"),
    (r"back ?pack|rucksack|daypack|knapsack", "backpack"),
    (r"suitcase|luggage|trolley|carry-on|cabin case|spinner", "suitcase"),
    (r"duffle|duffel|holdall|weekender|gym bag|travel bag|sports bag", "duffle"),
    (r"messenger|satchel|crossbody|cross-body|sling", "messenger"),
    (r"\btote|shopper|shopping bag|beach bag", "tote"),
    (r"handbag|hand bag|purse|top[- ]handle|bucket bag|hobo|shoulder bag|clutch|\bbag\b", "handbag"),
)
CATEGORY_NOUNS = {
    "handbag": "handbag",
    "tote": "tote bag",
    "briefcase": "briefcase",
    "laptop_bag": "laptop bag",
    "backpack": "backpack",
    "duffle": "duffle bag",
    "messenger": "messenger bag",
    "suitcase": "suitcase",
    "other": "bag",
}
CATEGORY_HANDLE = {
    "handbag": "top_loop",
    "tote": "twin_loops",
    "briefcase": "top_loop",
    "laptop_bag": "top_loop",
    "backpack": "top_loop",
    "duffle": "twin_loops",
    "messenger": "top_loop",
    "suitcase": "top_loop",
    "other": "top_loop",
}
# typical body size (width, height) in cm
CATEGORY_SIZE = {
    "handbag": (30.0, 22.0),
    "tote": (38.0, 34.0),
    "briefcase": (40.0, 30.0),
    "laptop_bag": (40.0, 30.0),
    "backpack": (30.0, 44.0),
    "duffle": (55.0, 28.0),
    "messenger": (38.0, 29.0),
    "suitcase": (40.0, 55.0),
    "other": (30.0, 30.0),
}
CATEGORY_MATERIAL = {
    "handbag": "leather",
    "tote": "canvas",
    "briefcase": "leather",
    "laptop_bag": "nylon",
    "backpack": "nylon",
    "duffle": "canvas",
    "messenger": "canvas",
    "suitcase": "polycarbonate",
    "other": "fabric",
}
MATERIAL_WORDS = (
    "leather",
    "suede",
    "canvas",
    "nylon",
    "cotton",
    "denim",
    "polyester",
    "wool",
    "felt",
    "straw",
    "jute",
    "vinyl",
    "polycarbonate",
    "aluminium",
    "aluminum",
    "neoprene",
    "velvet",
    "linen",
    "raffia",
    "rattan",
)
# style of the outfit and setting, by category
CATEGORY_STYLE = {
    "handbag": "smart",
    "tote": "casual",
    "briefcase": "business",
    "laptop_bag": "business",
    "backpack": "casual",
    "duffle": "travel",
    "messenger": "casual",
    "suitcase": "travel",
    "other": "smart",
}
# hold poses that suit each handle, in order of preference
HANDLE_POSES = {
    "top_loop": ("beside_hip", "in_front", "forearm_crook"),
    "twin_loops": ("forearm_crook", "beside_hip", "in_front"),
    "strap_loop": ("shoulder_strap", "beside_hip"),
    "none": ("cradled", "under_arm"),
}
CATEGORY_SHOTS = {
    "handbag": ("half_body", "full_body", "close"),
    "tote": ("full_body", "half_body"),
    "briefcase": ("full_body", "half_body"),
    "laptop_bag": ("full_body", "half_body"),
    "backpack": ("full_body", "half_body"),
    "duffle": ("full_body",),
    "messenger": ("full_body", "half_body"),
    "suitcase": ("full_body",),
    "other": ("half_body", "full_body"),
}

SKIN_TONES = (
    "fair skin with light freckles",
    "light olive skin",
    "warm beige skin",
    "medium tan skin",
    "golden-brown skin",
    "light brown skin",
    "deep brown skin",
    "dark ebony skin",
)
FEATURES = {
    "feminine": (
        "soft oval face and natural makeup",
        "high cheekbones and subtle makeup",
        "defined brows and bare skin look",
        "heart-shaped face and light makeup",
        "strong jawline and minimal makeup",
    ),
    "masculine": (
        "short trimmed beard and strong jawline",
        "clean-shaven angular face",
        "light stubble and warm eyes",
        "neat moustache and defined cheekbones",
        "clean-shaven round face and friendly eyes",
    ),
    "androgynous": (
        "sharp cheekbones and bare skin look",
        "soft angular face and no makeup",
        "defined brows and calm eyes",
    ),
}
HAIR = {
    "feminine": (
        "long straight black hair",
        "shoulder-length wavy brown hair",
        "short natural curls",
        "dark blonde hair in a sleek low bun",
        "auburn chin-length bob",
        "long braids tied back",
    ),
    "masculine": (
        "short dark hair",
        "cropped curly hair",
        "short side-parted brown hair",
        "buzz cut",
        "swept-back medium-length hair",
        "short textured blond hair",
    ),
    "androgynous": ("short platinum crop", "chin-length straight black hair", "tousled short brown hair"),
}
GREY_HAIR = {
    "feminine": ("silver-grey chin-length bob", "shoulder-length grey hair", "salt-and-pepper pixie cut"),
    "masculine": ("short grey hair", "salt-and-pepper hair and beard", "silver swept-back hair"),
    "androgynous": ("short silver-grey hair", "salt-and-pepper crop"),
}
BUILDS = ("slim build", "athletic build", "average build", "tall and slender build", "sturdy build")

# outfits per style: each garment has a {light} or {dark} colour slot (light/dark vs the product)
OUTFITS = {
    "business": (
        ("{a} tailored blazer", "{b} silk blouse", "{a} straight trousers", "black leather loafers"),
        ("{a} wool suit jacket", "{b} crisp shirt", "{a} suit trousers", "brown leather shoes"),
        ("{a} fine-knit sweater", "{b} pleated trousers", "minimal white sneakers"),
    ),
    "smart": (
        ("{b} silk blouse", "{a} wide-leg trousers", "nude heeled sandals"),
        ("{a} fitted knit top", "{b} midi skirt", "low block heels"),
        ("{b} linen shirt", "{a} chinos", "suede loafers"),
        ("{a} slip dress", "{b} light cardigan", "strappy flat sandals"),
    ),
    "casual": (
        ("{b} cotton t-shirt", "{a} straight-leg jeans", "white canvas sneakers"),
        ("{a} oversized sweatshirt", "{b} relaxed trousers", "clean white sneakers"),
        ("{b} striped long-sleeve top", "{a} denim jacket", "{a} cotton chinos", "canvas sneakers"),
        ("{a} utility jacket", "{b} crew-neck t-shirt", "{a} cargo trousers", "leather boots"),
    ),
    "travel": (
        ("{a} trench coat", "{b} knit sweater", "{a} slim trousers", "white leather sneakers"),
        ("{a} lightweight bomber jacket", "{b} t-shirt", "{a} joggers", "running shoes"),
        ("{b} linen shirt", "{a} tailored shorts", "leather sandals"),
    ),
}
LIGHT_COLOURS = ("cream", "white", "light grey", "beige", "sand", "ivory", "pale blue")
DARK_COLOURS = ("navy", "charcoal", "black", "olive", "chocolate brown", "deep green", "slate grey")
SETTINGS = {
    "business": (
        "a bright modern office lobby with glass walls, softly blurred",
        "a clean city street with pale stone buildings, softly blurred",
        "a minimalist concrete architecture backdrop",
    ),
    "smart": (
        "a seamless light grey studio backdrop",
        "a sunlit Parisian-style street with cream facades, softly blurred",
        "an elegant hotel corridor with warm wood panels, softly blurred",
    ),
    "casual": (
        "an urban park path with soft green bokeh",
        "a sunny city sidewalk with a blurred cafe front",
        "a seamless off-white studio backdrop",
    ),
    "travel": (
        "a bright airport terminal, softly blurred",
        "a modern train station concourse, softly blurred",
        "a hotel lobby with warm light, softly blurred",
    ),
}
LIGHTINGS = (
    "soft diffused daylight",
    "bright even studio lighting with a large softbox",
    "warm golden-hour sunlight",
    "overcast natural light",
    "soft window light from the side",
)
GAZES = (
    "looking at the camera",
    "looking slightly off-camera",
    "glancing down at the bag",
    "looking over the shoulder towards the camera",
)
EXPRESSIONS = (
    "relaxed natural smile",
    "calm confident expression",
    "soft closed-mouth smile",
    "poised neutral expression",
)
POSE_WORDS = {
    "beside_hip": "held beside the hip",
    "in_front": "held in front of the body",
    "forearm_crook": "carried in the hand with the elbow bent",
    "raised_display": "lifted to chest height",
    "shoulder_strap": "carried by its strap on the shoulder",
    "cradled": "cradled against the body",
    "under_arm": "held under the arm",
}


# ---------------------------------------------------------------------------------------
# Image facts


@dataclass(frozen=True)
class ImageFacts:
    """What ``rules`` reads from the photo. ``bbox`` is XYXY input pixels of the product."""

    width: int
    height: int
    bbox: tuple[int, int, int, int]
    colours: list[str]  # colour names, most dominant first
    shares: list[float]  # fraction of product pixels per colour
    mean_lightness: float  # 0 (black) .. 1 (white), of the product pixels


def read_image_facts(image: Any, k: int = 4, seed: int = 0) -> ImageFacts:
    """Dominant colours (k-means on product pixels) and the product box of a packshot.

    ``image``: a path or PIL image. The background is taken to be the median colour of the
    image border; pixels far from it are the product. Works best on plain backgrounds.
    """
    # 1. a small RGB array, float32 in [0, 255], HWC
    rgb = open_rgb(image)
    width, height = rgb.size
    scale = min(1.0, 256.0 / max(width, height))
    small = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))))
    arr = np.asarray(small, dtype=np.float32)

    # 2. product pixels: far from the border's median colour
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    background = np.median(border, axis=0)
    distance = np.linalg.norm(arr - background, axis=-1)
    mask = distance > 40.0
    busy = float(np.linalg.norm(border - background, axis=-1).mean()) > 30.0
    if busy or mask.mean() < 0.02:  # a photo background or no clear product: the central area
        h, w = mask.shape
        mask = np.zeros_like(mask)
        mask[h // 5 : h - h // 5, w // 4 : w - w // 4] = True
    ys, xs = np.nonzero(mask)
    x0, x1 = np.percentile(xs, [0.5, 99.5])
    y0, y1 = np.percentile(ys, [0.5, 99.5])
    bbox = (
        int(x0 / scale),
        int(y0 / scale),
        int(min(width, (x1 + 1) / scale)),
        int(min(height, (y1 + 1) / scale)),
    )
    if not busy:
        # on a plain background the geometry's own segmentation gives the box: it models a
        # studio backdrop's vignette and peels floor shadows, which a distance to the border's
        # median colour counts as product
        bbox = plain_product_box(rgb) or bbox

    # 3. k-means on product pixels
    pixels = arr[mask]
    rng = np.random.default_rng(seed)
    if len(pixels) > 20000:
        pixels = pixels[rng.choice(len(pixels), 20000, replace=False)]
    centres, counts = kmeans(pixels, k=min(k, len(pixels)), rng=rng)
    order = np.argsort(-counts)
    names: list[str] = []
    shares: list[float] = []
    total = float(counts.sum())
    for i in order:
        share = counts[i] / total
        name = colour_name(centres[i])
        if share < 0.08 and names:
            continue
        if name in names:
            shares[names.index(name)] += share
            continue
        names.append(name)
        shares.append(share)
    lightness = float(pixels.mean() / 255.0)
    return ImageFacts(width, height, bbox, names[:3], [round(s, 3) for s in shares[:3]], lightness)


def plain_product_box(rgb: Any, side: int = 512) -> tuple[int, int, int, int] | None:
    """XYXY input pixels of the product by the geometry's ``plain`` segmentation on a copy at most
    ``side`` px long (about 30 ms), or None when it finds no product. rgb: a PIL RGB image."""
    from autoshoot.config.prepare import PrepareConfig
    from autoshoot.geometry.segment import StageError, clean_mask, estimate_background, segment_plain

    width, height = rgb.size
    scale = min(1.0, side / max(width, height))
    small = np.asarray(rgb.resize((max(1, round(width * scale)), max(1, round(height * scale)))), np.uint8)
    config = PrepareConfig()
    border = estimate_background(small, config)
    try:
        mask = clean_mask(segment_plain(small, config, border), small, config, border).mask
    except StageError:
        return None
    ys, xs = np.nonzero(mask)
    x0, x1 = np.percentile(xs, [0.5, 99.5])  # as the colour box: a few stray pixels do not count
    y0, y1 = np.percentile(ys, [0.5, 99.5])
    return (
        int(x0 / scale),
        int(y0 / scale),
        int(min(width, (x1 + 1) / scale)),
        int(min(height, (y1 + 1) / scale)),
    )


def kmeans(
    pixels: np.ndarray, k: int, rng: np.random.Generator, iters: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Plain k-means. ``pixels``: Nx3 float32 RGB. Returns (kx3 centres, k counts)."""
    centres = pixels[rng.choice(len(pixels), k, replace=False)].copy()
    labels = np.zeros(len(pixels), dtype=np.int64)
    for _ in range(iters):
        d = ((pixels[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        labels = d.argmin(1)
        for j in range(k):
            members = pixels[labels == j]
            if len(members):
                centres[j] = members.mean(0)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return centres, counts


def colour_name(rgb: np.ndarray) -> str:
    """A plain colour word for an RGB triple in [0, 255]."""
    r, g, b = (float(c) / 255.0 for c in rgb)
    h, light, s = colorsys.rgb_to_hls(r, g, b)
    hue = h * 360.0
    if light < 0.12:
        return "black"
    if s < 0.15 or (light < 0.25 and s < 0.3):
        if light > 0.85:
            return "white"
        if light > 0.6:
            return "light grey"
        if light > 0.3:
            return "grey"
        return "charcoal"
    if light > 0.9:
        return "white"
    if hue < 15 or (hue >= 330 and light < 0.55) or hue >= 345:
        return "burgundy" if light < 0.3 else ("pink" if light > 0.7 else "red")
    if hue < 45:
        if light < 0.35:
            return "brown"
        if s < 0.45:
            return "tan" if light < 0.65 else "beige"
        return "orange" if light < 0.7 else "peach"
    if hue < 70:
        if s < 0.4:
            return "khaki" if light < 0.6 else "beige"
        return "mustard" if light < 0.45 else "yellow"
    if hue < 160:
        return "olive" if (light < 0.35 or s < 0.35) else "green"
    if hue < 200:
        return "teal"
    if hue < 255:
        return "navy" if light < 0.3 else ("light blue" if light > 0.7 else "blue")
    if hue < 290:
        return "purple" if light < 0.7 else "lavender"
    return "magenta" if s > 0.6 and light < 0.7 else "pink"


# ---------------------------------------------------------------------------------------
# The brief


def guess_category(request: BriefRequest, facts: ImageFacts) -> str:
    """Catalog category column, else keywords in title/notes, else the product's shape."""
    column = request.category.strip().lower().replace(" ", "_").replace("-", "_")
    if column in CATEGORIES:
        return column
    text = f"{request.category} {request.title} {request.notes}".lower()
    for pattern, category in CATEGORY_WORDS:
        if re.search(pattern, text):
            return category
    x0, y0, x1, y1 = facts.bbox
    aspect = (y1 - y0) / max(1, x1 - x0)  # height / width
    if aspect > 1.3:
        return "backpack"
    if aspect < 0.6:
        return "duffle"
    return "handbag"


def guess_handle(request: BriefRequest, category: str) -> str:
    if request.handle_hint in HANDLES:
        return str(request.handle_hint)
    text = f"{request.title} {request.notes}".lower()
    if re.search(r"no handle|handleless|clutch|pouch", text):
        return "none"
    if re.search(r"crossbody|cross-body|shoulder strap|sling|strap only", text):
        return "strap_loop"
    if re.search(r"two handles|twin handles|double handles|dual handles", text):
        return "twin_loops"
    return CATEGORY_HANDLE[category]


def guess_size(request: BriefRequest, category: str, facts: ImageFacts) -> tuple[float, float]:
    """Sizes written in the title/notes ("38 x 30 cm"), else the category's typical area at the photo's aspect."""
    match = re.search(
        r"(\d+(?:[.,]\d+)?)\s*[x×]\s*(\d+(?:[.,]\d+)?)(?:\s*[x×]\s*\d+(?:[.,]\d+)?)?\s*cm",
        f"{request.title} {request.notes}",
    )
    if match:
        w, h = (float(match.group(i).replace(",", ".")) for i in (1, 2))
        if 5 <= w <= 150 and 5 <= h <= 150:
            return (w, h)
    tw, th = CATEGORY_SIZE[category]
    x0, y0, x1, y1 = facts.bbox
    aspect = (y1 - y0) / max(1, x1 - x0)
    typical = th / tw
    aspect = float(np.clip(aspect, typical / 1.35, typical * 1.35))
    area = tw * th
    w = (area / aspect) ** 0.5
    return (round(w, 1), round(w * aspect, 1))


def guess_material(request: BriefRequest, category: str) -> str:
    text = f"{request.title} {request.notes}".lower()
    for word in MATERIAL_WORDS:
        if word in text:
            return word
    return CATEGORY_MATERIAL[category]


def pick_persona(rng: random.Random, style: str, product_is_dark: bool) -> dict[str, Any]:
    """An adult persona and an outfit whose colours contrast with the product."""
    gender = rng.choices(GENDER_PRESENTATIONS, weights=(0.45, 0.4, 0.15))[0]
    age = rng.choice(AGE_RANGES)
    skin_tone = rng.choice(SKIN_TONES)
    hair_table = GREY_HAIR if age in ("50s", "60s") and rng.random() < 0.6 else HAIR
    palette = LIGHT_COLOURS if product_is_dark else DARK_COLOURS
    a, b = rng.sample(palette, 2)
    outfit = rng.choice(OUTFITS[style])
    if gender == "masculine":  # keep the outfit tables' skirts and blouses for feminine presentations
        outfit = tuple(
            g.replace("silk blouse", "shirt")
            .replace("midi skirt", "tailored trousers")
            .replace("slip dress", "knit polo")
            .replace("nude heeled sandals", "suede loafers")
            .replace("low block heels", "leather loafers")
            .replace("strappy flat sandals", "leather sandals")
            for g in outfit
        )
    garments = [g.format(a=a, b=b) for g in outfit]
    return {
        "gender_presentation": gender,
        "age_range": age,
        "skin_tone": skin_tone,
        "features": rng.choice(FEATURES[gender]),
        "build": rng.choice(BUILDS),
        "hair": rng.choice(hair_table[gender]),
        "garments": garments,
        "custom": None,
    }


def rules_brief(request: BriefRequest, facts: ImageFacts | None = None) -> Brief:
    """The deterministic brief for one request (same request → same brief)."""
    # 1. the product
    facts = facts or read_image_facts(request.image, seed=request.seed)
    category = guess_category(request, facts)
    handle = guess_handle(request, category)
    size = guess_size(request, category, facts)
    material = guess_material(request, category)
    colours = facts.colours or ["black"]
    noun = CATEGORY_NOUNS[category]
    description = f"{colours[0]} {material} {noun}"

    # 2. persona, setting and pose, rotated by the seed
    rng = random.Random(request.seed)
    style = CATEGORY_STYLE[category]
    persona = pick_persona(rng, style, product_is_dark=facts.mean_lightness < 0.5)
    setting = rng.choice(SETTINGS[style])
    lighting = rng.choice(LIGHTINGS)
    poses = HANDLE_POSES[handle]
    hold_pose = poses[rng.randrange(len(poses))] if rng.random() < 0.5 else poses[0]
    shots = CATEGORY_SHOTS[category]
    if hold_pose in ("shoulder_strap", "raised_display", "under_arm") and "half_body" in shots:
        shot = "half_body"
    else:
        shot = shots[0] if rng.random() < 0.6 else rng.choice(shots)

    # 3. assemble and validate
    data = {
        "product": {
            "category": category,
            "description": description,
            "colours": colours,
            "material": material,
            "handle": handle,
            "size_cm": list(size),
            "handle_box": None,
        },
        "persona": persona,
        "setting": setting,
        "lighting": lighting,
        "hold_pose": hold_pose,
        "shot": shot,
        "gaze": rng.choice(GAZES),
        "expression": rng.choice(EXPRESSIONS),
        "rationale": (
            f"A {colours[0]} {noun} of about {size[0]:g} x {size[1]:g} cm reads best {POSE_WORDS[hold_pose]} "
            f"in a {shot.replace('_', '-')} shot, with {persona['garments'][0]} to contrast with it."
        ),
    }
    return Brief.from_data(data)


class RulesVLM:
    """The ``rules`` backend: ``describe(requests)`` without any model."""

    name = "rules"

    def __init__(self, config: Any = None):
        self.config = config

    def describe(self, requests: list[BriefRequest]) -> list[BriefResult]:
        results = []
        for request in requests:
            start = time.perf_counter()
            brief = rules_brief(request)
            results.append(BriefResult(brief=brief, backend=self.name, seconds=time.perf_counter() - start))
        return results

    def close(self) -> None:
        pass
