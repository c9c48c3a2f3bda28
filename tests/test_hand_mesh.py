"""The capsule hand model: five fingers, depth from z, a sharp outline."""

from __future__ import annotations

import numpy as np
import pytest

from autoshoot.backends import HAND_MESHES
from autoshoot.backends.hand_mesh import CapsuleHandMesh, draw_outlines, synthetic_hand_landmarks


def test_registered_and_renders_depth_scribble_mask():
    mesh = HAND_MESHES.create("capsule", None)
    lms = synthetic_hand_landmarks((128, 128), 150)
    g = mesh.render(lms, (256, 256))
    for a in (g.depth, g.scribble, g.mask):
        assert a.shape == (256, 256) and a.dtype == np.uint8
    assert g.depth[g.mask == 0].max() == 0 and g.depth[g.mask > 0].min() >= 64
    assert 0.03 < (g.mask > 0).mean() < 0.4
    assert (g.scribble > 0).any() and ((g.scribble > 0) & (g.mask == 0)).any()


def test_always_five_separate_fingertips():
    lms = synthetic_hand_landmarks((128, 128), 150)
    g = CapsuleHandMesh().render(lms, (256, 256))
    for tip in (4, 8, 12, 16, 20):
        x, y = np.round(lms[tip, :2]).astype(int)
        assert g.mask[y, x] == 255
    # between neighbouring fingertips there is background: the fingers are not fused
    for a, b in ((8, 12), (12, 16), (16, 20)):
        mid = np.round((lms[a, :2] + lms[b, :2]) / 2).astype(int)
        assert g.mask[mid[1], mid[0]] == 0


def test_nearer_landmarks_are_brighter():
    lms = synthetic_hand_landmarks((128, 128), 150)
    near, far = lms.copy(), lms.copy()
    near[8, 2] -= 60  # index tip toward the camera
    far[8, 2] += 60
    x, y = np.round(lms[8, :2]).astype(int)
    dn = CapsuleHandMesh().render(near, (256, 256)).depth[y, x]
    df = CapsuleHandMesh().render(far, (256, 256)).depth[y, x]
    assert dn > df


def test_bad_landmarks_are_refused():
    with pytest.raises(ValueError, match=r"\(21, 3\)"):
        CapsuleHandMesh().render(np.zeros((20, 3)), (64, 64))


def test_outlines_mark_label_changes():
    label = np.zeros((10, 10), np.int16)
    label[3:7, 3:7] = 2
    edge = draw_outlines(label, 1)
    assert edge[3, 5] == 255 and edge[5, 5] == 0 and edge[0, 0] == 0


def test_kinematic_mesh_draws_the_corrected_hand():
    from autoshoot.hands.anatomy import canonical_hand

    hand = canonical_hand(palm_length=60.0, curl_deg=10.0) + np.array([128.0, 170.0, 0.0])
    bad = hand.copy()
    bad[2:5] = bad[1] + 1.6 * (bad[2:5] - bad[1])  # a 1.6x thumb
    mesh = HAND_MESHES.create("kinematic", None)
    drawn_as_detected = CapsuleHandMesh().render(bad, (256, 256))
    corrected = mesh.render(bad, (256, 256))
    x, y = np.round(bad[4, :2]).astype(int)  # the long thumb's tip
    assert drawn_as_detected.mask[y, x] == 255
    assert corrected.mask[y, x] == 0  # the corrected thumb does not reach it
    tip = np.round(mesh.correct(bad)[4, :2]).astype(int)
    assert corrected.mask[tip[1], tip[0]] == 255
    for a in (corrected.depth, corrected.scribble, corrected.mask):
        assert a.shape == (256, 256) and a.dtype == np.uint8
