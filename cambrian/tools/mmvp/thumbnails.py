"""Pictures for reviewing mined pairs: one PNG per pair and a contact sheet of the best ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps

from cambrian.tools import sources

SIDE = 192  # thumbnail side in pixels
BAND = 34  # caption band under each pair
COLUMNS = 4
RED = (200, 30, 30)


def _thumb(ref: str) -> Image.Image:
    """The image scaled to fit SIDE x SIDE on grey, aspect kept."""
    img = ImageOps.contain(Image.fromarray(sources.read_ref(ref)), (SIDE, SIDE), Image.BICUBIC)
    canvas = Image.new("RGB", (SIDE, SIDE), (128, 128, 128))
    canvas.paste(img, ((SIDE - img.width) // 2, (SIDE - img.height) // 2))
    return canvas


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size)


def pair_image(ref_1: str, ref_2: str, rank: int, sim_a: float, sim_b: float, *,
               random: bool = False) -> Image.Image:
    """The two images side by side, captioned with the rank and both similarities (and a red
    NOT PRETRAINED mark when an encoder has no checkpoint)."""
    out = Image.new("RGB", (2 * SIDE + 4, SIDE + BAND), (255, 255, 255))
    out.paste(_thumb(ref_1), (0, 0))
    out.paste(_thumb(ref_2), (SIDE + 4, 0))
    draw = ImageDraw.Draw(out)
    text = f"#{rank}  cos A {sim_a:.3f}  cos B {sim_b:.3f}"
    draw.text((4, SIDE + 2), text, fill=(0, 0, 0), font=_font(14))
    if random:
        draw.text((4, SIDE + 18), "NOT PRETRAINED: random-init or test encoder", fill=RED,
                  font=_font(12))
    return out


def contact_sheet(pngs: Sequence[str], meta: Mapping) -> Image.Image:
    """Pair PNGs in a grid of ``COLUMNS`` under a header naming both encoders and thresholds."""
    tiles = [Image.open(p).convert("RGB") for p in pngs]
    tw, th = tiles[0].size
    rows = -(-len(tiles) // COLUMNS)
    header = 48
    sheet = Image.new("RGB", (COLUMNS * (tw + 8), header + rows * (th + 8)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    a, b = meta["encoder_a"], meta["encoder_b"]
    draw.text((4, 4), f"A: {a['label']} [{a['reduce']}]   B: {b['label']} [{b['reduce']}]",
              fill=(0, 0, 0), font=_font(14))
    line = (f"cos A > {meta['tau_a']}, cos B < {meta['tau_b']}; {meta['pairs']} pairs among "
            f"{meta['images']} images ({meta['index']} search)")
    draw.text((4, 24), line, fill=RED if "warning" in meta else (0, 0, 0), font=_font(14))
    for n, tile in enumerate(tiles):
        r, c = divmod(n, COLUMNS)
        sheet.paste(tile, (c * (tw + 8), header + r * (th + 8)))
    return sheet
