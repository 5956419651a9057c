"""Head pose held to known answers: the generic face projected at known angles comes back at them."""

import cv2
import numpy as np
import pytest

from stages.lib.faces.pose import GENERIC_FACE, POSE_LANDMARKS, camera_matrix, head_pose


def projected_landmarks(yaw, pitch, roll, side=224):
    rotate = lambda axis, degrees: cv2.Rodrigues(np.radians(degrees) * np.eye(3)[axis])[0]  # noqa: E731
    rotation = rotate(2, roll) @ rotate(1, yaw) @ rotate(0, -pitch)
    points, _ = cv2.projectPoints(GENERIC_FACE, cv2.Rodrigues(rotation)[0], np.array([10.0, -20.0, 1500.0]),
                                  camera_matrix(side), np.zeros(4))
    landmarks = np.zeros((68, 2))
    landmarks[list(POSE_LANDMARKS)] = points[:, 0]
    return landmarks


@pytest.mark.parametrize("angles", [(0, 0, 0), (25, 0, 0), (0, -15, 0), (0, 0, 12), (-30, 10, -8)])
def test_known_angles_come_back(angles):
    pose = head_pose(projected_landmarks(*angles), 224)
    assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx(angles, abs=0.01)


def test_signs_follow_the_image():
    """Yaw > 0: the face turns to the image's left (its left eye corner nears the nose); roll > 0:
    clockwise in the image (the left eye corner rises)."""
    frontal = projected_landmarks(0, 0, 0)
    turned, tilted = projected_landmarks(20, 0, 0), projected_landmarks(0, 0, 10)
    assert turned[36, 0] - turned[30, 0] > frontal[36, 0] - frontal[30, 0]
    assert tilted[36, 1] < frontal[36, 1]
