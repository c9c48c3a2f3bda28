"""Segmenters: ``plain`` (no model), ``birefnet`` and ``rembg`` (the rembg package).

Every segmenter is built once per run as ``Cls(config)`` (``autoshoot.config.Config``) and
answers ``predict(image)``:

    image: HxWx3 uint8 RGB  →  alpha: HxW float32 in [0, 1], 1 = product

``birefnet`` loads BiRefNet either from the hub / a local folder through transformers
(``trust_remote_code``, as its authors publish it) or from a local ``.onnx`` file.
``rembg`` is the rembg package itself: ``rembg.new_session(name)`` with any of its sessions
(``birefnet-general``, the default, ``u2net``, ``isnet-general-use``, ...), which downloads
its model into ``$U2NET_HOME`` (default ``~/.u2net``) as ``<name>.onnx`` on first use; a
``.onnx`` path runs through rembg's ``u2net_custom`` session, or its BiRefNet session when the
file name says BiRefNet. Offline, a missing model file is a clear error before any download.
rembg needs opencv-python-headless, which shares the ``cv2`` folder with mediapipe's
opencv-contrib-python: both are pinned to the same version (see DEVELOPERS.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoshoot.errors import ModelMissingError
from autoshoot.hub import env_offline, is_offline
from autoshoot.run.models import on_own_stream

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REMBG_RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0"


@dataclass(frozen=True)
class OnnxRecipe:
    """rembg's pre/post-processing of one model family."""

    filename: str
    size: int  # square input side
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    sigmoid: bool = False  # BiRefNet outputs logits


# rembg model name → release file and processing (as in rembg's sessions); the BiRefNet ONNX
# export is also what ``birefnet_model`` may point at
REMBG_MODELS = {
    "u2net": OnnxRecipe("u2net.onnx", 320),
    "u2netp": OnnxRecipe("u2netp.onnx", 320),
    "silueta": OnnxRecipe("silueta.onnx", 320),
    "isnet-general-use": OnnxRecipe(
        "isnet-general-use.onnx", 1024, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0)
    ),
    "birefnet-general": OnnxRecipe("BiRefNet-general-epoch_244.onnx", 1024, sigmoid=True),
    "birefnet-general-lite": OnnxRecipe(
        "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx", 1024, sigmoid=True
    ),
}


def u2net_home() -> Path:
    """Where rembg keeps its models (the same rule as rembg's sessions)."""
    return Path(
        os.environ.get("U2NET_HOME") or Path(os.environ.get("XDG_DATA_HOME", "~")).expanduser() / ".u2net"
    ).expanduser()


class PlainSegmenter:
    """Packshots on a uniform background: colour distance from the border, shadows peeled."""

    name = "plain"

    def __init__(self, config: Any):
        self.config = config.prepare

    def predict(self, image: np.ndarray) -> np.ndarray:
        from autoshoot.geometry.segment import segment_plain

        return segment_plain(image, self.config)


class OnnxMattingSession:
    """One ONNX salient-object model run the way rembg runs it (one image at a time).

    The input is resized to ``recipe.size`` square (Lanczos), divided by its maximum, then
    normalised; the first output's first channel is (sigmoid →) min-max scaled to [0, 1] and
    resized back.
    """

    def __init__(self, path: Path, recipe: OnnxRecipe, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()
        ]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.recipe = recipe

    def predict(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        r = self.recipe
        h, w = image.shape[:2]
        x = np.asarray(Image.fromarray(image).resize((r.size, r.size), Image.Resampling.LANCZOS), np.float32)
        x = x / max(float(x.max()), 1e-6)
        x = (x - np.asarray(r.mean, np.float32)) / np.asarray(r.std, np.float32)
        x = x.transpose(2, 0, 1)[None].astype(np.float32)
        pred = self.session.run(None, {self.input_name: x})[0][:, 0]
        if r.sigmoid:
            pred = 1.0 / (1.0 + np.exp(-pred))
        lo, hi = float(pred.min()), float(pred.max())
        pred = (pred - lo) / max(hi - lo, 1e-6)
        small = Image.fromarray((np.squeeze(pred) * 255).astype(np.uint8), mode="L")
        return np.asarray(small.resize((w, h), Image.Resampling.LANCZOS), np.float32) / 255.0


class RembgSegmenter:
    """The rembg package: ``prepare.rembg_model`` is a rembg session name or a .onnx path."""

    name = "rembg"

    def __init__(self, config: Any):
        model = config.prepare.rembg_model
        if model.endswith(".onnx") or is_offline(config) or env_offline():
            missing = rembg_model_missing(model, fetch=False)
            if missing:
                raise ModelMissingError(missing)
        self.session = rembg_session(model)

    def predict(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        mask = self.session.predict(Image.fromarray(image))[0]
        return np.asarray(mask.convert("L"), np.float32) / 255.0


def rembg_session(model: str) -> Any:
    """``rembg.new_session(model)``; a .onnx path runs through rembg's own session classes."""
    try:
        import rembg
    except ImportError as err:
        raise ModelMissingError(
            [("rembg segmenter", "the rembg package", f"reinstall autoshoot (`make install`): {err}")]
        ) from err
    if not model.endswith(".onnx"):
        try:
            return rembg.new_session(model)
        except ValueError as err:  # not a rembg session name
            raise ModelMissingError(
                [
                    (
                        "rembg segmenter",
                        model,
                        f"set prepare.rembg_model to a rembg session or a .onnx path: {err}",
                    )
                ]
            ) from err
    path = str(Path(model).expanduser())
    if "birefnet" not in Path(path).name.lower():
        return rembg.new_session("u2net_custom", model_path=path)
    import onnxruntime as ort
    from rembg.sessions.birefnet_general import BiRefNetSessionGeneral

    class LocalBiRefNet(BiRefNetSessionGeneral):
        @classmethod
        def download_models(cls, *args: Any, **kwargs: Any) -> str:
            return path

    return LocalBiRefNet("birefnet-general", ort.SessionOptions())


def rembg_model_missing(model: str, fetch: bool) -> list[tuple[str, str, str]]:
    """The rembg model file when it is absent ([] when present, or when rembg may fetch it)."""
    if model.endswith(".onnx"):
        ok = Path(model).expanduser().is_file()
        return [] if ok else [("rembg segmenter", model, "check the path in prepare.rembg_model")]
    if fetch:
        return []  # rembg downloads it into ~/.u2net on first use
    if (u2net_home() / f"{model}.onnx").is_file():
        return []
    return [rembg_missing(model)]


def rembg_missing(name: str) -> tuple[str, str, str]:
    path = u2net_home() / f"{name}.onnx"
    recipe = REMBG_MODELS.get(name)
    source = f"{REMBG_RELEASES}/{recipe.filename}" if recipe else f"rembg's {name} model"
    return (
        f"rembg segmenter {name!r}",
        str(path),
        f"run once online (rembg downloads it into {u2net_home()}), or download {source} to {path} "
        "(or set U2NET_HOME), or pass --segmenter plain for packshots on a white background",
    )


class BiRefNetSegmenter:
    """BiRefNet: a local .onnx (rembg's export) or a transformers model (hub id or folder)."""

    name = "birefnet"

    def __init__(self, config: Any):
        pc = config.prepare
        source = pc.birefnet_model
        self.size = pc.birefnet_size
        self.onnx: OnnxMattingSession | None = None
        self.model = None
        if source.endswith(".onnx"):
            path = Path(source).expanduser()
            if not path.is_file():
                raise ModelMissingError(
                    [("BiRefNet segmenter", str(path), "check the path in prepare.birefnet_model")]
                )
            self.onnx = OnnxMattingSession(path, OnnxRecipe(path.name, self.size, sigmoid=True))
            return
        offline = is_offline(config)
        if offline and not Path(source).expanduser().exists() and not hub_cached(source):
            raise ModelMissingError(
                [birefnet_missing(source, "not in the local hub cache and fetching is off", config)]
            )
        self.model, self.device = load_birefnet_transformers(source, offline=offline)

    @on_own_stream
    def predict(self, image: np.ndarray) -> np.ndarray:
        if self.onnx is not None:
            return self.onnx.predict(image)
        import torch
        from PIL import Image

        h, w = image.shape[:2]
        x = np.asarray(
            Image.fromarray(image).resize((self.size, self.size), Image.Resampling.BILINEAR), np.float32
        )
        x = (x / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        t = torch.from_numpy(x.transpose(2, 0, 1)[None]).to(self.device)
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode():
            out = self.model(t.to(dtype))
        logits = out[-1] if isinstance(out, (list, tuple)) else out
        pred = torch.sigmoid(logits.float())[0, 0].cpu().numpy()
        small = Image.fromarray((pred * 255).astype(np.uint8), mode="L")
        return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255.0


def load_birefnet_transformers(source: str, offline: bool) -> tuple[Any, str]:
    """``AutoModelForImageSegmentation.from_pretrained(source, trust_remote_code=True)``."""
    import torch

    try:
        from transformers import AutoModelForImageSegmentation

        model = AutoModelForImageSegmentation.from_pretrained(
            source, trust_remote_code=True, local_files_only=offline or env_offline()
        )
    except (OSError, ValueError, ImportError) as err:
        from autoshoot.hub import fetch_problem

        raise ModelMissingError([birefnet_missing(source, fetch_problem(err))]) from err
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    if device == "cuda":
        model = model.half()
    return model, device


def birefnet_missing(source: str, detail: str = "", config: Any = None) -> tuple[str, str, str]:
    from autoshoot.hub import download_hint

    where = source + (f" ({detail})" if detail else "")
    return (
        "BiRefNet segmenter",
        where,
        f"{download_hint(source, config)}; or set prepare.birefnet_model to a local folder or to a .onnx "
        f"export ({REMBG_RELEASES}/{REMBG_MODELS['birefnet-general'].filename}); "
        "or pass --segmenter plain for packshots on a white background",
    )


def segmenter_model_entries(config: Any) -> list[Any]:
    """The model file of the profile's segmenter, for ``autoshoot models`` and the up-front fetch.

    rembg's session file (``~/.u2net/<session>.onnx``, kind ``rembg``: rembg downloads it
    itself), or BiRefNet from the hub (the ``birefnet`` segmenter). For ``auto`` it is the model
    of photographic backgrounds. A local folder or .onnx file is checked where it loads.
    """
    from autoshoot.stages.render import ModelEntry

    pc = config.prepare
    name = pc.model_segmenter if pc.segmenter == "auto" else pc.segmenter
    why = ", for photos whose border is not uniform" if pc.segmenter == "auto" else ""
    if name == "rembg" and not pc.rembg_model.endswith(".onnx"):
        path = u2net_home() / f"{pc.rembg_model}.onnx"
        return [ModelEntry(f"rembg segmenter {pc.rembg_model}{why}", str(path), "rembg", files=("",))]
    source = pc.birefnet_model
    if name != "birefnet" or source.endswith(".onnx"):
        return []
    return [
        ModelEntry(
            "BiRefNet segmenter" + why,
            source,
            "remote_code",
            files=("config.json",),
            patterns=("*.json", "*.py", "*.safetensors"),
        )
    ]


def segmenter_fix(entry: Any, config: Any) -> str:
    """How to provide a segmenter entry of :func:`segmenter_model_entries`."""
    if entry.kind == "rembg":
        return rembg_missing(Path(entry.source).stem)[2]
    return birefnet_missing(entry.source, config=config)[2]


def fetch_rembg_model(name: str) -> None:
    """rembg's own download of session ``name`` into ~/.u2net (or U2NET_HOME)."""
    rembg_session(name)


def missing_segmenter_models(config: Any, name: str) -> list[tuple[str, str, str]]:
    """Absent model files of segmenter ``name``, without importing torch or onnxruntime."""
    pc = config.prepare
    if name == "rembg":
        return rembg_model_missing(pc.rembg_model, fetch=not is_offline(config))
    if name == "birefnet":
        source = pc.birefnet_model
        path = Path(source).expanduser()
        if source.endswith(".onnx") or path.exists():
            return (
                []
                if path.exists()
                else [("BiRefNet segmenter", source, "check the path in prepare.birefnet_model")]
            )
        if not is_offline(config):
            return []  # fetched on first use
        if hub_cached(source):
            return []
        return [birefnet_missing(source, "not in the local hub cache and fetching is off", config)]
    return []


def hub_cached(repo_id: str) -> bool:
    """Whether a hub model has a snapshot in the local cache (no network)."""
    home = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME") or Path.home() / ".cache/huggingface") / "hub"
    )
    folder = home / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    return folder.is_dir() and any(folder.iterdir())
