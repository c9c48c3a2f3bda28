"""Draw the example catalog's product photos: simple bag packshots on white, made in code so
the repository may ship them. Run from the repository root:

    .venv/bin/python catalogs/make_example.py

It writes catalogs/example/*.png; catalogs/example.csv lists them.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent / "example"

BAGS = {
    # name: (body colour, body box, handles as ellipse boxes, handle width, canvas)
    "tote_navy": (
        (32, 48, 96),
        (250, 430, 830, 1060),
        [(330, 180, 620, 700), (460, 180, 750, 700)],
        26,
        (1080, 1200),
    ),
    "handbag_tan": ((176, 122, 72), (230, 520, 850, 980), [(390, 260, 690, 740)], 34, (1080, 1200)),
    "briefcase_black": ((28, 28, 30), (180, 520, 900, 1000), [(440, 380, 640, 640)], 30, (1080, 1200)),
    "clutch_red": ((170, 30, 40), (220, 480, 860, 820), [], 0, (1080, 1200)),
}


def draw_bag(colour, body, handles, handle_width, size) -> Image.Image:  # type: ignore[no-untyped-def]
    w, h = size
    image = Image.new("RGB", size, (250, 250, 248))
    # soft floor shadow under the bag
    shadow = Image.new("L", size, 0)
    ImageDraw.Draw(shadow).ellipse((body[0] + 20, body[3] - 25, body[2] - 20, body[3] + 35), fill=90)
    shadow = shadow.filter(ImageFilter.GaussianBlur(18))
    image.paste((200, 200, 198), mask=shadow)
    draw = ImageDraw.Draw(image)
    for box in handles:  # the top halves of ellipses stand above the body
        draw.arc(box, start=180, end=360, fill=tuple(max(0, c - 15) for c in colour), width=handle_width)
        x0, y0, x1, y1 = box
        cy = (y0 + y1) // 2
        draw.line(
            (x0 + handle_width // 2, cy, x0 + handle_width // 2, body[1] + 10),
            fill=colour,
            width=handle_width,
        )
        draw.line(
            (x1 - handle_width // 2, cy, x1 - handle_width // 2, body[1] + 10),
            fill=colour,
            width=handle_width,
        )
    draw.rounded_rectangle(body, radius=40, fill=colour)
    # a seam and a flap line, so the canny edges have something inside the outline
    seam = tuple(min(255, c + 40) for c in colour)
    draw.rounded_rectangle(
        (body[0] + 30, body[1] + 30, body[2] - 30, body[3] - 30), radius=28, outline=seam, width=4
    )
    draw.line((body[0] + 30, body[1] + 160, body[2] - 30, body[1] + 160), fill=seam, width=4)
    return image


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    for name, spec in BAGS.items():
        draw_bag(*spec).save(HERE / f"{name}.png", optimize=True)
        print(HERE / f"{name}.png")


if __name__ == "__main__":
    main()
