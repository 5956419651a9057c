"""Head pose (yaw, pitch, roll in degrees) from the 68 landmarks, by `cv2.solvePnP` on a generic face.

Six landmarks (nose tip, chin, the eyes' outer corners, the mouth's corners) are matched to a generic
3-D face (millimetre-scale, the one popularised by learnopencv), in the camera's axes: x right, y down,
z away from the camera, the nose tip at the origin. The camera is a pinhole with the focal length of
the image's width and no distortion; a crop is cut around the face, so that is close enough for
angles. 0, 0, 0 is a face looking straight at the camera, upright. Signs: yaw > 0 turned towards the
image's left, pitch > 0 looking up, roll > 0 tilted clockwise in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

POSE_LANDMARKS = (30, 8, 36, 45, 48, 54)  # nose tip, chin, eye corners (image left, right), mouth corners
GENERIC_FACE = np.array([
    (0.0, 0.0, 0.0),          # nose tip
    (0.0, 330.0, 65.0),       # chin
    (-225.0, -170.0, 135.0),  # outer corner of the eye on the image's left
    (225.0, -170.0, 135.0),   # outer corner of the eye on the image's right
    (-150.0, 150.0, 125.0),   # mouth corner, image left
    (150.0, 150.0, 125.0),    # mouth corner, image right
])


@dataclass(frozen=True)
class HeadPose:
    yaw: float
    pitch: float
    roll: float


def camera_matrix(side: int) -> np.ndarray:
    return np.array([[side, 0, side / 2], [0, side, side / 2], [0, 0, 1]], dtype=float)


def euler_angles(rotation: np.ndarray) -> HeadPose:
    """Yaw (about y), pitch (about x), roll (about z) of a rotation matrix R = Rz Ry Rx, in degrees."""
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    yaw = np.degrees(np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0)))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    return HeadPose(yaw=float(yaw), pitch=float(-pitch), roll=float(roll))


def frontal_translation(image_points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Where a frontal generic face would sit to show these eye corners and nose tip: solvePnP's start.
    Six nearly coplanar points have a mirrored solution too (a face seen from behind, roll near 180);
    starting from the front keeps the iteration on the right one."""
    focal, centre = camera[0, 0], camera[:2, 2]
    eyes = float(np.linalg.norm(image_points[3] - image_points[2])) or 1.0
    depth = focal * float(GENERIC_FACE[3, 0] - GENERIC_FACE[2, 0]) / eyes
    x, y = (image_points[0] - centre) * depth / focal
    return np.array([[x], [y], [depth]])


def head_pose(landmarks: np.ndarray, side: int) -> HeadPose | None:
    """The head's pose from (68, 2) landmarks in a `side`-pixel square image; None when solvePnP fails."""
    image_points = np.asarray(landmarks, dtype=float)[list(POSE_LANDMARKS)]
    camera = camera_matrix(side)
    rotation_vector, translation = np.zeros((3, 1)), frontal_translation(image_points, camera)
    found, rotation_vector, _ = cv2.solvePnP(GENERIC_FACE, image_points, camera, np.zeros(4), rotation_vector,
                                             translation, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not found:
        return None
    rotation, _ = cv2.Rodrigues(rotation_vector)
    return euler_angles(rotation)
