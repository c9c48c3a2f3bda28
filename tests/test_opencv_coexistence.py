"""mediapipe (opencv-contrib-python) and rembg (opencv-python-headless) in one environment.

Both OpenCV wheels write the same ``cv2/`` folder. They are pinned to the same version, so
whichever wrote last leaves a whole cv2 of that version; ``make install`` puts the contrib
build back on top. These tests run the real packages: mediapipe's hand detector and a rembg
session on a tiny random ONNX model.
"""

from __future__ import annotations

import importlib.metadata as metadata

import numpy as np
import pytest
from PIL import Image


def test_one_opencv_of_one_version_is_in_place():
    import cv2

    contrib = metadata.version("opencv-contrib-python")
    headless = metadata.version("opencv-python-headless")
    assert contrib == headless, "the two OpenCV wheels must be pinned to the same version"
    assert cv2.__version__ == ".".join(contrib.split(".")[:3])
    # the contrib build is the one in place (its extra modules are there)
    assert hasattr(cv2, "ximgproc"), "cv2 is the headless build: reinstall opencv-contrib-python"
    # and the functions both mediapipe and rembg call work
    image = np.zeros((64, 64, 3), np.uint8)
    cv2.circle(image, (32, 32), 10, (255, 255, 255), -1)
    assert cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).sum() > 0


def test_mediapipe_hands_and_rembg_run_side_by_side(tmp_path, monkeypatch, samples_dir):
    import mediapipe as mp
    import rembg
    import torch

    # 1. mediapipe's hands, on a real photo of a hand
    photo = np.asarray(Image.open(samples_dir / "C_hand_real_grip_04.jpg").convert("RGB"))
    with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2) as hands:
        found = hands.process(photo)
    assert found.multi_hand_landmarks, "mediapipe found no hand on a photo of a hand"
    assert len(found.multi_hand_landmarks[0].landmark) == 21
    # 2. a rembg session (rembg's own u2netp class) on a tiny random ONNX model in ~/.u2net
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
    home = tmp_path / "u2net"
    home.mkdir()
    torch.onnx.export(
        net.eval(),
        torch.randn(1, 3, 32, 32),
        str(home / "u2netp.onnx"),
        input_names=["input.1"],
        output_names=["out"],
        dynamic_axes={"input.1": {2: "h", 3: "w"}, "out": {2: "h", 3: "w"}},
        dynamo=False,
    )
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.setenv("MODEL_CHECKSUM_DISABLED", "1")  # a random model cannot match rembg's checksum
    session = rembg.new_session("u2netp")
    assert type(session).__name__ == "U2netpSession"
    mask = session.predict(Image.fromarray(photo))[0]
    assert mask.size == (photo.shape[1], photo.shape[0])
    # rembg's full remove(), which calls cv2 for its post-processing
    cut = rembg.remove(Image.fromarray(photo), session=session, post_process_mask=True)
    assert cut.mode == "RGBA" and cut.size == mask.size
    # 3. mediapipe still runs after rembg has been used in the same process
    with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2) as hands:
        assert hands.process(photo).multi_hand_landmarks


@pytest.mark.parametrize("module", ["cv2", "mediapipe", "rembg"])
def test_each_imports_alone(module):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
