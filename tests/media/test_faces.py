import numpy as np
import pytest

from mesm.media.faces import (
    FACE_MEAN,
    FACE_STD,
    FaceCropper,
    centred_box,
    expand_box,
    fill_missing_boxes,
)


def test_normalisation_constants_are_mesms():
    assert FACE_MEAN == (159.0, 111.0, 102.0)
    assert FACE_STD == (37.0, 33.0, 32.0)


def test_expand_box_adds_the_scaled_margin_and_clips():
    # 46-pixel box, margin 2 at size 48: grows by 2 * 46 / 46 = 2 pixels (1 each side).
    boxes = np.array([[10.0, 20.0, 56.0, 66.0], [-5.0, 0.0, 40.0, 300.0]])
    out = expand_box(boxes, image_size=48, margin=2, height=100, width=80)
    assert out.tolist() == [[9, 19, 57, 67], [0, 0, 41, 100]]


def test_missing_boxes_take_the_nearest_detected_frame():
    boxes = np.arange(6 * 4, dtype=np.float64).reshape(6, 4)
    detected = np.array([False, True, False, False, False, True])
    filled = fill_missing_boxes(boxes, detected)
    # Frame 3 is two away from both 1 and 5: the earlier wins.
    assert filled[:, 0].tolist() == [4.0, 4.0, 4.0, 4.0, 20.0, 20.0]
    with pytest.raises(ValueError, match="no frame"):
        fill_missing_boxes(boxes, np.zeros(6, dtype=bool))


def test_centred_box_is_the_largest_centred_square():
    assert centred_box(240, 180).tolist() == [0, 30, 180, 210]


@pytest.fixture(scope="module")
def cropper():
    return FaceCropper(device="cpu")


def _frames(with_face: list[bool]) -> np.ndarray:
    import cv2

    from mesm.data.synthetic import astronaut_face

    face = cv2.resize(astronaut_face(), (75, 85))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, size=(len(with_face), 240, 180, 3), dtype=np.uint8)
    for index, present in enumerate(with_face):
        if present:
            frames[index, 60:145, 50:125] = face
    return frames


def test_real_face_is_detected_and_missing_frames_reuse_its_box(cropper):
    frames = _frames([True, False, True])
    crops = cropper(frames)
    assert crops.faces.shape == (3, 3, 48, 48) and crops.faces.dtype == np.uint8
    assert crops.n_detected == 2
    # The faceless middle frame is cut at a detected box: its crop matches the face frame's place,
    # so it is the dark noise there, not a centred crop of something else.
    boxes, detected = cropper.detect(frames)
    assert detected.tolist() == [True, False, True]
    x1, y1, x2, y2 = boxes[0]
    assert 40 <= x1 < 70 and 50 <= y1 < 90 and 105 < x2 <= 135 and 120 < y2 <= 155
    # Face crops are bright skin; the reused-box crop of pure noise stays dark.
    assert crops.faces[0].mean() > 100 and crops.faces[1].mean() < 60


def test_no_face_anywhere_falls_back_to_a_centred_crop(cropper):
    frames = _frames([False, False])
    frames[:, 30:210, :] = 200  # the centred 180x180 square is bright, the rest dark noise
    crops = cropper(frames)
    assert crops.n_detected == 0
    assert crops.faces.shape == (2, 3, 48, 48)
    assert crops.faces.min() == 200


def test_rejects_frames_of_the_wrong_shape(cropper):
    with pytest.raises(ValueError, match=r"\(S, H, W, 3\)"):
        cropper(np.zeros((2, 32, 32), np.uint8))
