"""The shared vocabulary of the brief, the geometry and the catalog: one place, no imports.

The brief's schema, the geometry's placements and the catalog's override validation all use
these tuples, so a new hold pose or shot is added here once.
"""

from __future__ import annotations

CATEGORIES = (
    "handbag",
    "tote",
    "briefcase",
    "laptop_bag",
    "backpack",
    "duffle",
    "messenger",
    "suitcase",
    "other",
)
HANDLES = ("top_loop", "twin_loops", "strap_loop", "none")
SHOTS = ("close", "half_body", "full_body")

# Hold poses where a hand grips the handle gap. Each maps to a hand position in the geometry.
GRIP_POSES = (
    "beside_hip",  # arm hanging, grip at hip height beside the body, bag hangs below
    "in_front",  # arm slightly forward, grip in front of the thighs, near the centre line
    "forearm_crook",  # elbow bent ~90 degrees, handle in the hand at waist/chest height
    "raised_display",  # bag lifted to chest height towards the camera, arm bent
    "shoulder_strap",  # strap over the shoulder, hand holding the strap at chest height
)
# Poses for products without a usable handle: nothing is erased, no grip is scored.
NON_GRIP_POSES = (
    "cradled",  # held against the body with both forearms
    "under_arm",  # clutched between upper arm and ribs
)
HOLD_POSES = GRIP_POSES + NON_GRIP_POSES

# Catalog columns that override a field of the brief. None means free text.
OVERRIDE_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "category": CATEGORIES,
    "handle": HANDLES,
    "hold_pose": HOLD_POSES,
    "shot": SHOTS,
    "persona": None,
    "garments": None,
    "setting": None,
    "lighting": None,
    "gaze": None,
    "expression": None,
    "size_cm": None,  # "WIDTHxHEIGHT" in cm, e.g. "38x30"
}
# Other optional catalog columns.
INFO_COLUMNS = ("title", "brand", "notes", "candidates", "seed")
REQUIRED_COLUMNS = ("sku", "image")
