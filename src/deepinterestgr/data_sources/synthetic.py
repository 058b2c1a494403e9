"""The built-in ``synthetic`` source: a small beauty-shop catalogue and its shoppers, offline.

Generated from the seed alone (no files, no network), sized so the whole pipeline runs on a
laptop CPU in minutes, yet with the structure the method relies on:

- **Latent interests.** Every item belongs to one of ``num_interests`` themes (nail care, sun
  protection, ...). Its title, brand, category path and description are drawn from that
  theme's vocabulary, so text embeddings cluster by interest, and its image is tinted with
  the theme's hue.
- **Sequential habits.** Each theme orders its items in a hidden chain (a routine: cleanser,
  then toner, then serum ...). With probability ``habit_strength`` a user's next item is the
  chain successor of the previous one; otherwise it is a popularity-weighted draw from one of
  the user's two interests (primary with probability 0.8). A first-order model of
  transitions can therefore learn what a popularity ranking cannot.
- **No repeats**, as in Amazon Beauty: a user never buys the same item twice.
"""

from __future__ import annotations

import colorsys
from typing import NamedTuple

import numpy as np

from deepinterestgr.common.io import Item
from deepinterestgr.common.params import SyntheticParams
from deepinterestgr.data_sources.dataset import Dataset, build_dataset

PRIMARY_SHARE = 0.8  # probability a non-habit step stays in the user's primary interest
POPULARITY_EXPONENT = 0.8  # Zipf exponent of item popularity inside an interest


class Theme(NamedTuple):
    """Vocabulary of one latent interest."""

    path: tuple[str, ...]  # category path below the root "Beauty"
    brands: tuple[str, ...]
    products: tuple[str, ...]
    qualities: tuple[str, ...]
    purpose: tuple[str, ...]  # why someone buys it; goes into the description
    price: float  # typical price in dollars


THEMES: tuple[Theme, ...] = (
    Theme(
        ("Makeup", "Nails"),
        ("Lacquera", "Polished Co", "NailCraft"),
        ("nail polish", "top coat", "base coat", "cuticle oil", "gel lacquer", "nail file"),
        ("glossy", "chip-resistant", "quick-dry", "shimmer", "salon-grade"),
        ("a salon manicure at home", "long-lasting shine on the nails", "strong healthy nails"),
        8.0,
    ),
    Theme(
        ("Hair Care", "Styling"),
        ("Mane Studio", "StyleFix", "Curlwise"),
        ("styling gel", "hair spray", "curl cream", "texturizing paste", "heat protectant"),
        ("strong-hold", "frizz-control", "humidity-proof", "flexible", "volumizing"),
        ("hairstyles that hold all day", "defined curls", "protection from hot tools"),
        12.0,
    ),
    Theme(
        ("Hair Care", "Shampoo & Conditioner"),
        ("PureLocks", "Hairvana", "Silkroot"),
        ("shampoo", "conditioner", "hair mask", "scalp scrub", "leave-in conditioner"),
        ("sulfate-free", "color-safe", "moisturizing", "clarifying", "keratin"),
        ("soft manageable hair", "keeping dyed hair vibrant", "a clean healthy scalp"),
        14.0,
    ),
    Theme(
        ("Skin Care", "Face", "Anti-Aging"),
        ("Dermalux", "Youthline", "Retinova"),
        ("retinol serum", "peptide cream", "eye cream", "firming lotion", "night cream"),
        ("anti-wrinkle", "firming", "collagen-boosting", "overnight", "age-defying"),
        ("smoothing fine lines", "firmer skin", "a youthful complexion"),
        35.0,
    ),
    Theme(
        ("Skin Care", "Face", "Acne"),
        ("ClearPath", "Blemix", "Purederm"),
        ("spot treatment", "salicylic cleanser", "clay mask", "pore strips", "tea tree toner"),
        ("oil-control", "pore-clearing", "non-comedogenic", "soothing", "exfoliating"),
        ("clearing breakouts", "fewer blackheads", "calming oily skin"),
        11.0,
    ),
    Theme(
        ("Skin Care", "Sun"),
        ("SolShield", "Beachday", "UVGuard"),
        (
            "sunscreen lotion",
            "sunscreen stick",
            "after-sun gel",
            "tinted sunscreen",
            "lip balm SPF",
        ),
        ("SPF 50", "water-resistant", "reef-safe", "broad-spectrum", "mineral"),
        ("protection from sunburn", "long days at the beach", "soothing skin after the sun"),
        13.0,
    ),
    Theme(
        ("Fragrance",),
        ("Maison Elle", "Oud & Co", "Bloomery"),
        ("eau de parfum", "eau de toilette", "body mist", "perfume oil", "travel spray"),
        ("floral", "woody", "citrus", "musky", "vanilla"),
        ("a signature scent", "a lasting fragrance for evenings", "a fresh everyday scent"),
        45.0,
    ),
    Theme(
        ("Makeup", "Eyes"),
        ("LashLab", "Eyeconic", "Kohlista"),
        ("mascara", "eyeliner", "eyeshadow palette", "brow pencil", "false lashes"),
        ("smudge-proof", "volumizing", "waterproof", "long-wear", "smoky"),
        ("dramatic eye looks", "fuller lashes", "defined brows"),
        10.0,
    ),
    Theme(
        ("Makeup", "Lips"),
        ("Pout Society", "Lipique", "Velvet Kiss"),
        ("lipstick", "lip gloss", "lip liner", "liquid lipstick", "lip stain"),
        ("matte", "hydrating", "long-lasting", "high-shine", "nude"),
        ("bold colour on the lips", "soft hydrated lips", "a lip look that lasts"),
        9.0,
    ),
    Theme(
        ("Makeup", "Face"),
        ("Basetone", "Skinfinish", "Flawless Co"),
        ("foundation", "concealer", "setting powder", "primer", "bronzer"),
        ("full-coverage", "lightweight", "oil-free", "luminous", "buildable"),
        ("an even skin tone", "covering blemishes", "makeup that stays put"),
        18.0,
    ),
    Theme(
        ("Men's Grooming", "Shaving"),
        ("Barberline", "Steelgroom", "Beardsmith"),
        ("shaving cream", "aftershave balm", "beard oil", "safety razor", "shaving brush"),
        ("sensitive-skin", "menthol", "sandalwood", "close-shave", "alcohol-free"),
        ("a smooth close shave", "a groomed beard", "no razor burn"),
        16.0,
    ),
    Theme(
        ("Bath & Body",),
        ("Soakwell", "Bodybliss", "Lathery"),
        ("body wash", "bath bomb", "body scrub", "body butter", "bubble bath"),
        ("shea", "lavender", "exfoliating", "creamy", "relaxing"),
        ("a relaxing bath ritual", "soft smooth skin", "unwinding after work"),
        10.0,
    ),
    Theme(
        ("Tools & Accessories", "Brushes"),
        ("Brushworks", "Blendr", "ProTools"),
        ("brush set", "makeup sponge", "kabuki brush", "brush cleaner", "eyelash curler"),
        ("synthetic-bristle", "vegan", "professional", "travel", "precision"),
        ("flawless blending", "applying makeup like a pro", "clean hygienic tools"),
        15.0,
    ),
    Theme(
        ("Hair Removal",),
        ("Smoothe", "Waxology", "Bareskin"),
        ("wax strips", "epilator", "depilatory cream", "sugar wax", "ingrown hair serum"),
        ("painless", "quick", "salon-smooth", "gentle", "long-lasting"),
        ("weeks of smooth legs", "removing unwanted hair at home", "no ingrown hairs"),
        20.0,
    ),
    Theme(
        ("Oral Care",),
        ("Brightbite", "Smilecare", "Enamelix"),
        (
            "whitening strips",
            "whitening toothpaste",
            "electric toothbrush head",
            "mouthwash",
            "teeth whitening pen",
        ),
        ("whitening", "enamel-safe", "fresh-mint", "sensitivity-relief", "charcoal"),
        ("a whiter smile", "fresh breath all day", "gentle care for sensitive teeth"),
        22.0,
    ),
    Theme(
        ("Natural", "Aromatherapy"),
        ("Essentia", "Greenleaf", "Herbarium"),
        ("essential oil", "diffuser blend", "massage oil", "aroma roller", "organic balm"),
        ("organic", "eucalyptus", "calming", "cold-pressed", "plant-based"),
        ("calm and better sleep", "natural self-care", "a spa feeling at home"),
        17.0,
    ),
)
SIZES = ("0.5 fl oz", "1 fl oz", "1.7 oz", "2 oz", "3.4 fl oz", "4 oz", "8 oz", "Pack of 2")


def generate(params: SyntheticParams, seed: int) -> Dataset:
    """Generate the synthetic data set; the same ``params`` and ``seed`` give the same data.

    Returns items with ids 0..num_items-1 (image paths ``images/<id>.png``, arrays in
    ``Dataset.images``) and ``num_users`` users with ``min_length..max_length`` items each.
    """
    _validate(params)
    rng = np.random.default_rng(seed)
    # Interest k owns items k, k+K, k+2K, ... in a random id permutation, so ids carry no theme.
    interest_of = rng.permutation(np.arange(params.num_items) % params.num_interests)
    members = [np.flatnonzero(interest_of == k) for k in range(params.num_interests)]
    popularity = np.empty(params.num_items)
    successor = np.empty(params.num_items, dtype=np.int64)
    for items in members:
        popularity[items] = rng.permutation(
            1.0 / np.arange(1, len(items) + 1) ** POPULARITY_EXPONENT
        )
        chain = rng.permutation(items)
        successor[chain] = np.roll(chain, -1)

    catalogue, metadata, images = [], {}, {}
    for item_id in range(params.num_items):
        item = _item(item_id, THEMES[interest_of[item_id]], rng)
        catalogue.append(item.source_id)
        metadata[item.source_id] = item
        images[item.image] = _image(interest_of[item_id], params, rng)

    sequences = []
    for user in range(params.num_users):
        primary, secondary = rng.choice(params.num_interests, size=2, replace=False)
        length = int(rng.integers(params.min_length, params.max_length + 1))
        seen = np.zeros(params.num_items, dtype=bool)
        order: list[int] = []
        while len(order) < length:
            if order and rng.random() < params.habit_strength and not seen[successor[order[-1]]]:
                chosen = int(successor[order[-1]])
            else:
                interest = primary if rng.random() < PRIMARY_SHARE else secondary
                candidates = members[interest][~seen[members[interest]]]
                if len(candidates) == 0:
                    candidates = np.flatnonzero(~seen)
                cumulative = np.cumsum(popularity[candidates])
                chosen = int(candidates[np.searchsorted(cumulative, rng.random() * cumulative[-1])])
            seen[chosen] = True
            order.append(chosen)
        sequences.append((f"U{user:06d}", [catalogue[i] for i in order]))
    return build_dataset("synthetic", sequences, metadata, catalogue, images=images)


def _validate(params: SyntheticParams) -> None:
    if not 2 <= params.num_interests <= len(THEMES):
        raise ValueError(
            f"download.synthetic.num_interests must be in 2..{len(THEMES)} (one vocabulary per "
            f"interest), found {params.num_interests}"
        )
    if params.num_items < params.num_interests:
        raise ValueError("download.synthetic.num_items must be at least num_interests")
    if not 3 <= params.min_length <= params.max_length <= params.num_items:
        raise ValueError(
            "download.synthetic needs 3 <= min_length <= max_length <= num_items, found "
            f"{params.min_length}, {params.max_length}, {params.num_items}"
        )
    if not 0.0 <= params.habit_strength <= 1.0:
        raise ValueError(
            f"download.synthetic.habit_strength must be in [0, 1], found {params.habit_strength}"
        )


def _item(item_id: int, theme: Theme, rng: np.random.Generator) -> Item:
    def pick(options: tuple[str, ...]) -> str:
        return options[int(rng.integers(len(options)))]

    brand, product, quality, size = (
        pick(theme.brands),
        pick(theme.products),
        pick(theme.qualities),
        pick(SIZES),
    )
    purpose, other = rng.choice(len(theme.purpose), size=2, replace=False)
    extra = pick(tuple(q for q in theme.qualities if q != quality))
    description = (
        f"{'An' if quality[0] in 'aeiou' else 'A'} {quality} {product} from {brand}, made for "
        f"{theme.purpose[purpose]}. "
        f"{extra.capitalize()} formula, also great for {theme.purpose[other]}."
    )
    return Item(
        item_id=item_id,
        source_id=f"SYN{item_id:05d}",
        title=f"{brand} {quality.title()} {product.title()}, {size}",
        brand=brand,
        categories=(("Beauty", *theme.path),),
        description=description,
        price=round(float(theme.price * rng.lognormal(0.0, 0.35)), 2),
        image=f"images/{item_id:05d}.png",
    )


def _image(interest: int, params: SyntheticParams, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[S, S, 3]``: the interest's hue as background, an item-specific block pattern."""
    size = params.image_size
    hue = interest / params.num_interests
    background = np.array(colorsys.hsv_to_rgb(hue, 0.55, 0.9)) * 255
    accent = np.array(colorsys.hsv_to_rgb(hue, 0.9, rng.uniform(0.35, 0.7))) * 255
    blocks = rng.random((4, 4)) < 0.4  # a coarse item-specific pattern
    mask = np.kron(blocks, np.ones((size // 4 + 1, size // 4 + 1), dtype=bool))[:size, :size]
    image = np.where(mask[..., None], accent, background) + rng.normal(0, 6, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)
