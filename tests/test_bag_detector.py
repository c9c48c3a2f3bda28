"""The scene rule "no second bag": the zero-shot detector (tiny random OWLv2 / OWL-ViT through
the real ``from_pretrained`` path), the box matching, the scorer's scene component, and the
missing-model errors. No network: an absent hub model must be reported, never fetched."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import RecordingBagDetector

from autoshoot.backends.bag_detector import BagDetection, find_second_bags, shrink_to
from autoshoot.cli import main
from autoshoot.config import load_config
from autoshoot.errors import ModelMissingError
from autoshoot.stages.score import ScoreStage

QUERIES = ("a bag", "a handbag", "a backpack", "a tote bag", "a briefcase")
PRODUCT = (300.0, 400.0, 600.0, 800.0)


def det(x0: float, y0: float, x1: float, y1: float, score: float = 0.9, label: str = "a bag") -> BagDetection:
    return BagDetection((x0, y0, x1, y1), score, label)


# ---------------------------------------------------------------------------------------
# the real detector on tiny random models


@pytest.fixture(scope="module")
def tiny_owlv2(tmp_path_factory):
    pytest.importorskip("transformers")
    from autoshoot.backends.bag_detector import tiny_detector_on_disk

    return tiny_detector_on_disk(tmp_path_factory.mktemp("models") / "tiny-owlv2")


def tiny_owlvit(folder):
    """A random tiny OWL-ViT saved like a hub folder (the detector has no OWL-ViT of its own)."""
    import torch
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor

    from autoshoot.backends.sdxl_tiny import build_byte_tokenizers

    _, tokenizer = build_byte_tokenizers()
    tokenizer.model_max_length = 16
    n = len(tokenizer)
    tower = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = OwlViTConfig(
        text_config={
            **tower,
            "vocab_size": n,
            "max_position_embeddings": 16,
            "bos_token_id": n - 2,
            "eos_token_id": n - 1,
        },
        vision_config={**tower, "image_size": 96, "patch_size": 32},
        projection_dim=32,
    )
    torch.manual_seed(0)
    OwlViTForObjectDetection(config).save_pretrained(folder)
    size = {"height": 96, "width": 96}
    OwlViTProcessor(
        image_processor=OwlViTImageProcessor(size=size, crop_size=size), tokenizer=tokenizer
    ).save_pretrained(folder)
    return folder


def tiny_grounding_dino(folder):
    """A random tiny Grounding DINO (Swin + BERT) saved like a hub folder, with a word-level vocabulary."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    folder.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", "a", "bag", "handbag", "backpack"]
    words += ["tote", "briefcase"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    backbone = SwinConfig(
        embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=4, out_features=["stage1", "stage2"]
    )
    text = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=20,
        num_feature_levels=2,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
        use_timm_backbone=False,
    )
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}),
        tokenizer=BertTokenizer(str(folder / "vocab.txt")),
    ).save_pretrained(folder)
    return folder


def detector_config(source: str, threshold: float = 0.0):
    return load_config("tiny", overrides={"score.bag_model": source, "score.bag_threshold": threshold})


class FixedOutput:
    """Wraps a real detector model: its own outputs, except that every box is ``box``
    (cx, cy, w, h relative) and only the first box scores high, for the first query."""

    def __init__(self, model, box):
        self.model, self.box, self.config = model, box, model.config

    def to(self, *args, **kwargs):
        self.model.to(*args, **kwargs)
        return self

    def eval(self):
        return self

    def requires_grad_(self, flag):
        return self

    def __call__(self, **inputs):
        import torch

        out = self.model(**inputs)
        out.pred_boxes = torch.tensor(self.box, dtype=out.pred_boxes.dtype).expand_as(out.pred_boxes).clone()
        logits = torch.full_like(out.logits, -20.0)
        logits[0, 0, 0] = 20.0
        out.logits = logits
        return out


def test_tiny_owlv2_loads_through_from_pretrained_and_returns_pixel_boxes(tiny_owlv2):
    from transformers import Owlv2ForObjectDetection

    from autoshoot.backends.bag_detector import ZeroShotBagDetector

    assert (tiny_owlv2 / "model.safetensors").is_file() and (tiny_owlv2 / "config.json").is_file()
    detector = ZeroShotBagDetector(detector_config(str(tiny_owlv2), threshold=0.0))
    assert isinstance(detector.model, Owlv2ForObjectDetection) and detector.square_padded
    assert str(detector.device) == "cpu"
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)  # H x W
    found = detector.detect(image)
    assert found, "threshold 0 keeps every box"
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    for d in found:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 and x0 + 2 <= x1 <= 640 and 0 <= y0 and y0 + 2 <= y1 <= 480
        assert d.label in QUERIES
    # the same weights, the same answer: the detection is deterministic
    assert detector.detect(image) == found


def test_a_query_longer_than_the_text_tower_is_truncated(tiny_owlv2):
    from autoshoot.backends.bag_detector import ZeroShotBagDetector

    long_query = "a very large leather weekend bag"  # 32 bytes: the tiny tower takes 16 tokens
    config = load_config(
        "tiny",
        overrides={
            "score.bag_model": str(tiny_owlv2),
            "score.bag_queries": [long_query, "a bag"],
            "score.bag_threshold": 0.0,
        },
    )
    detector = ZeroShotBagDetector(config)
    image = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    labels = {d.label for d in detector.detect(image)}
    assert detector.text_inputs["input_ids"].shape == (2, 16)
    assert labels <= {long_query, "a bag"} and labels


@pytest.mark.parametrize("kind, bottom", [("owlv2", 320.0), ("owlvit", 240.0)])
def test_boxes_map_to_image_pixels(tiny_owlv2, tmp_path, kind, bottom):
    """A box at (0.25, 0, 0.75, 0.5) of what the model saw is (160, 0, 480, y) on a 640x480 image:
    OWLv2 saw the image padded to a 640 square (y = 320), OWL-ViT the image itself (y = 240)."""
    from autoshoot.backends.bag_detector import ZeroShotBagDetector

    folder = tiny_owlv2 if kind == "owlv2" else tiny_owlvit(tmp_path / "owlvit")
    detector = ZeroShotBagDetector(detector_config(str(folder), threshold=0.5))
    assert detector.square_padded == (kind == "owlv2")
    detector.model = FixedOutput(detector.model, [0.5, 0.25, 0.5, 0.5])
    image = np.zeros((480, 640, 3), np.uint8)
    (found,) = detector.detect(image)
    assert found.box == pytest.approx((160.0, 0.0, 480.0, bottom), rel=0.01, abs=1.0)
    assert found.label == "a bag" and found.score > 0.99


def test_a_grounding_dino_folder_loads_through_the_auto_classes(tmp_path):
    from autoshoot.backends.bag_detector import ZeroShotBagDetector

    detector = ZeroShotBagDetector(detector_config(str(tiny_grounding_dino(tmp_path / "gdino"))))
    assert type(detector.model).__name__ == "GroundingDinoForObjectDetection"
    assert not detector.square_padded and detector.input_size == (64, 96)
    found = detector.detect(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    assert found  # threshold 0: every query box
    for d in found:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 and x0 + 2 <= x1 <= 640 and 0 <= y0 and y0 + 2 <= y1 <= 480


def test_images_are_shrunk_to_the_model_input_only():
    image = np.zeros((1024, 768, 3), np.uint8)
    assert shrink_to(image, (128, None)).shape == (171, 128, 3)  # short side to 128
    assert shrink_to(image, (960, None)) is image  # never enlarged, never below the input size
    assert shrink_to(image, (800, 1333)) is image
    assert shrink_to(np.zeros((800, 4000, 3), np.uint8), (800, 1333)).shape == (267, 1333, 3)


def test_missing_hub_model_names_the_model_and_the_fix():
    from autoshoot.backends.bag_detector import ZeroShotBagDetector

    with pytest.raises(ModelMissingError) as err:
        ZeroShotBagDetector(load_config("default", overrides={"run.offline": True}))
    text = str(err.value)
    assert "bag detector: google/owlv2-base-patch16-ensemble" in text
    assert "autoshoot models download" in text and "--set score.bag_detector=none" in text


# ---------------------------------------------------------------------------------------
# matching and counting


def count(detections, product=PRODUCT, threshold=0.3):
    return find_second_bags(detections, product, threshold)


def test_the_product_alone_is_one_bag():
    found = count([det(305, 410, 590, 790, 0.8)])
    assert (found.n_bags, found.second) == (1, [])
    assert found.to_json()[0]["is_product"] is True
    # the product counts even when the detector misses it
    assert count([]).n_bags == 1 and count([]).second == []


def test_a_bag_away_from_the_product_is_a_second_bag():
    second = det(700, 400, 900, 700, 0.6, "a backpack")
    found = count([det(300, 400, 600, 800, 0.9), second])
    assert found.n_bags == 2 and found.second == [second]
    assert [b["is_product"] for b in found.to_json()] == [True, False]


def test_duplicates_across_queries_and_nested_boxes_count_once():
    found = count(
        [
            det(300, 400, 600, 800, 0.9, "a handbag"),
            det(310, 390, 610, 790, 0.7, "a tote bag"),  # the product again, another query
            det(350, 500, 560, 790, 0.5),  # the product's body, inside its box
            det(700, 400, 900, 700, 0.6, "a backpack"),
            det(705, 405, 895, 690, 0.55, "a bag"),  # the same second bag again
            det(720, 420, 800, 520, 0.5),  # a part of it
        ]
    )
    assert found.n_bags == 2
    assert [(d.label, d.score) for d in found.second] == [("a backpack", 0.6)]


def test_detections_below_the_threshold_are_ignored():
    found = count([det(700, 400, 900, 700, 0.29)], threshold=0.3)
    assert found.n_bags == 1 and found.second == [] and found.bags == []
    assert count([det(700, 400, 900, 700, 0.3)], threshold=0.3).n_bags == 2


def test_a_bag_touching_the_product_is_still_a_second_bag():
    # overlaps the product a little (IoU 0.08, 30% of the smaller box)
    found = count([det(540, 600, 700, 800, 0.8)])
    assert found.n_bags == 2


def test_without_a_product_box_one_detected_bag_is_the_product():
    one = [det(300, 400, 600, 800, 0.9), det(310, 410, 600, 790, 0.6)]
    assert count(one, product=None).n_bags == 1 and count(one, product=None).second == []
    two = count([*one, det(700, 400, 900, 700, 0.5)], product=None)
    assert two.n_bags == 2 and len(two.second) == 1
    assert {b["is_product"] for b in two.to_json()} == {None}


# ---------------------------------------------------------------------------------------
# the scorer's scene component


@pytest.fixture(scope="module")
def scored_sample(samples_dir):
    """One real photo scored three ways: no bag rule, only the product found, a second bag."""
    mp_hands = pytest.importorskip("autoshoot.backends.mediapipe_hands")
    from PIL import Image

    image = mp_hands.prepare_image(Image.open(samples_dir / "B_holding_backpack_strap_01.jpg"))
    config = load_config("default", overrides={"score.bag_detector": "none", "score.stability": False})
    h, w = image.shape[:2]
    product = (0.3 * w, 0.4 * h, 0.6 * w, 0.8 * h)
    results, detectors = {}, {}
    for name, boxes in {
        "none": None,
        "product": [(*product, 0.9)],
        "second": [(*product, 0.9), (0.75 * w, 0.1 * h, 0.95 * w, 0.3 * h, 0.7)],
    }.items():
        detectors[name] = None if boxes is None else RecordingBagDetector(boxes=boxes)
        scorer = mp_hands.MediaPipeHandScorer(config, bag_detector=detectors[name])
        results[name] = scorer.score(image, file="x", product_box=product)
        scorer.close()
    return image, results, detectors


@pytest.mark.samples
def test_a_second_bag_lowers_the_scene_and_says_so(scored_sample):
    image, results, detectors = scored_sample
    none, product, second = results["none"], results["product"], results["second"]
    assert detectors["second"].calls == [(image.shape, "uint8")]  # asked once, with the whole image
    assert product.components == none.components and product.reasons == none.reasons
    assert product.hand_score == none.hand_score and none.bags == []
    assert [b["is_product"] for b in product.bags] == [True]
    assert "2 bags" in second.reasons and "2 bags" not in product.reasons
    assert second.components["scene"] == pytest.approx(product.components["scene"] * 0.35, abs=1e-3)
    assert second.hand_score < product.hand_score
    assert [b["is_product"] for b in second.bags] == [True, False]


@pytest.mark.samples
def test_scene_off_builds_and_asks_no_bag_detector(samples_dir):
    mp_hands = pytest.importorskip("autoshoot.backends.mediapipe_hands")

    config = load_config("default", overrides={"score.scene": False, "score.stability": False})
    # the default detector's weights are absent here: building it would raise
    scorer = mp_hands.MediaPipeHandScorer(config)
    assert scorer.bag_detector is None
    result = scorer.score(np.full((256, 256, 3), 255, np.uint8), product_box=(10, 10, 100, 100))
    assert result.bags == [] and "scene" not in result.components
    scorer.close()


# ---------------------------------------------------------------------------------------
# models: listed, checked before the first SKU, named when missing


def test_default_profile_offline_names_the_detector_and_the_fix():
    config = load_config("default", overrides={"run.offline": True})
    (missing,) = ScoreStage().check_models(config)
    role, where, fix = missing
    assert role == "bag detector (scene: no second bag)"
    assert where.startswith("google/owlv2-base-patch16-ensemble (not in the cache: config.json")
    assert "autoshoot models download" in fix and "--set score.bag_detector=none" in fix
    assert ScoreStage().check_models(load_config("tiny")) == []
    off = load_config("default", overrides={"run.offline": True, "score.bag_detector": "none"})
    assert ScoreStage().check_models(off) == []


def test_unknown_detector_lists_valid_names():
    from autoshoot.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown bag detector 'yolo'; valid names are: none, zeroshot"):
        ScoreStage().check_models(load_config("tiny", overrides={"score.bag_detector": "yolo"}))


def test_an_offline_run_stops_before_the_first_sku_when_the_detector_is_missing(tmp_path):
    from fakes import write_catalog, write_photo

    from autoshoot.run.recipe import run_catalog

    write_photo(tmp_path / "a.png")
    catalog = write_catalog(tmp_path, [{"sku": "A", "image": "a.png"}])
    config = load_config(
        "default",
        overrides={
            "run.offline": True,
            "analyze.vlm": "rules",
            "render.model_set": "tiny",
            "render.upscaler": "tiny",
        },
    )
    with pytest.raises(ModelMissingError) as err:
        run_catalog(catalog, tmp_path / "run", config, quiet=True)
    assert str(err.value).startswith(
        "These models are missing, so nothing was run:\n"
        "  - bag detector (scene: no second bag): google/owlv2-base-patch16-ensemble (not in the cache"
    )
    assert not (tmp_path / "run" / "A").exists()


def test_models_list_and_check_show_the_detector(tiny_owlv2, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(main, ["models", "list"])
    line = next(ln for ln in listed.output.splitlines() if ln.startswith("bag detector"))
    assert "google/owlv2-base-patch16-ensemble" in line and line.endswith("not downloaded")
    tiny = runner.invoke(main, ["models", "list", "--profile", "tiny"])
    assert tiny.exit_code == 0
    assert any(ln.startswith("bag detector") and ln.endswith(" ok") for ln in tiny.output.splitlines())

    checked = runner.invoke(main, ["models", "check"])
    assert checked.exit_code == 1
    assert "MISSING bag detector (scene: no second bag): google/owlv2-base-patch16-ensemble" in checked.output
    # a local folder: its config loads without weights
    profile = tmp_path / "local.yaml"
    profile.write_text(f"base: tiny\nscore:\n  bag_model: {tiny_owlv2}\n")
    local = runner.invoke(main, ["models", "check", "--profile", str(profile)])
    assert local.exit_code == 0, local.output
    assert f"ok      bag detector (scene: no second bag): {tiny_owlv2}" in local.output
    profile.write_text(f"base: tiny\nscore:\n  bag_model: {tmp_path / 'nowhere'}\n")
    gone = runner.invoke(main, ["models", "check", "--profile", str(profile)])
    assert gone.exit_code == 1 and f"{tmp_path / 'nowhere'}/config.json" in gone.output


def test_overlay_outlines_the_product_and_the_second_bag():
    pytest.importorskip("cv2")
    from autoshoot.backends.mediapipe_hands import draw_overlay

    image = np.full((400, 400, 3), 255, np.uint8)
    bags = [
        {"box": [100, 100, 200, 300], "score": 0.9, "label": "a bag", "is_product": True},
        {"box": [250, 50, 350, 150], "score": 0.7, "label": "a bag", "is_product": False},
    ]
    overlay = draw_overlay(image, [], bags=bags)
    assert tuple(overlay[200, 100]) == (60, 90, 255)  # the product's left edge: blue
    assert tuple(overlay[150, 300]) == (255, 40, 40)  # the second bag's bottom edge: red
    assert (overlay[150, 150] == 255).all()  # inside: untouched
