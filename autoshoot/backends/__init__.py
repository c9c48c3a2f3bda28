"""Backend registries: one per kind of external model, name → lazily imported factory.

Every factory is called as ``factory(config: autoshoot.config.Config)`` and returns a session
object that is built once per run. Heavy libraries (torch, diffusers, transformers, mediapipe,
onnxruntime) are imported inside the backend modules, never here.
"""

from __future__ import annotations

from autoshoot.registry import Registry

VLMS = Registry("VLM backend")
VLMS.register("rules", "autoshoot.brief.rules:RulesVLM")  # the project's own brief, no model
VLMS.register("qwen", "autoshoot.backends.qwen_vl:QwenVLM")
VLMS.register("openai", "autoshoot.backends.openai_vl:OpenAIVLM")

SEGMENTERS = Registry("segmenter")
SEGMENTERS.register("plain", "autoshoot.backends.segmenters:PlainSegmenter")
SEGMENTERS.register("birefnet", "autoshoot.backends.segmenters:BiRefNetSegmenter")
SEGMENTERS.register("rembg", "autoshoot.backends.segmenters:RembgSegmenter")

RENDERERS = Registry("render backend")
RENDERERS.register("sdxl", "autoshoot.backends.sdxl:SDXLRenderer")

# The delivered picture: refined candidate → render.output_long_side (autoshoot.backends.upscaler).
UPSCALERS = Registry("upscaler")
UPSCALERS.register("esrgan", "autoshoot.backends.upscaler:SpandrelUpscaler")
UPSCALERS.register("sdxl-tile", "autoshoot.backends.upscaler:TileControlNetUpscaler")
UPSCALERS.register("lanczos", "autoshoot.backends.upscaler:ResizeUpscaler")
UPSCALERS.register("tiny", "autoshoot.backends.upscaler:tiny_upscaler")

HAND_SCORERS = Registry("hand scorer")
HAND_SCORERS.register("mediapipe", "autoshoot.backends.mediapipe_hands:MediaPipeHandScorer")

# The scene rule "no second bag" (score.bag_detector); part of the hand scorer's session.
BAG_DETECTORS = Registry("bag detector")
BAG_DETECTORS.register("none", "autoshoot.backends.bag_detector:NoBagDetector")
BAG_DETECTORS.register("zeroshot", "autoshoot.backends.bag_detector:ZeroShotBagDetector")

HAND_MESHES = Registry("hand mesh")
HAND_MESHES.register("capsule", "autoshoot.hands.mesh:CapsuleHandMesh")
HAND_MESHES.register("kinematic", "autoshoot.hands.mesh:KinematicHandMesh")

# Optional aesthetic / prompt-alignment scorers for the rank stage (score.aesthetic).
AESTHETIC_SCORERS = Registry("aesthetic scorer")
AESTHETIC_SCORERS.register("clip", "autoshoot.backends.aesthetic:ClipAlignmentScorer")
AESTHETIC_SCORERS.register("imagereward", "autoshoot.backends.aesthetic:ImageRewardScorer")
