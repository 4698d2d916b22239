"""Cameras and lights, rendered headless with PyBullet's TinyRenderer.

TinyRenderer cost scales with triangle count, not pixels, so robots ship low-poly visuals
(see assets/). Images are uint8 (H, W, 3) RGB; depth is metric (m); segmentation holds body ids.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pybullet as p


@dataclass(frozen=True)
class CameraPose:
    """A pinhole camera: ``eye`` and ``target`` in metres (world frame), vertical FOV in degrees."""

    eye: tuple[float, float, float] = (0.32, 0.0, 0.42)
    target: tuple[float, float, float] = (-0.12, 0.0, -0.02)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fov: float = 52.0
    near: float = 0.05
    far: float = 3.0


@dataclass(frozen=True)
class Lighting:
    """TinyRenderer light: direction points *from* the scene towards the light."""

    direction: tuple[float, float, float] = (0.4, -0.3, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.6
    diffuse: float = 0.4
    specular: float = 0.05
    shadows: bool = False


FRONT_CAMERA = CameraPose()
WRIST_OFFSET = 0.10  # wrist camera sits this far above the grasp frame (m), looking down


@dataclass
class RenderRequest:
    width: int
    height: int
    depth: bool = False
    segmentation: bool = False


def _matrices(pose: CameraPose, aspect: float) -> tuple[list[float], list[float]]:
    view = p.computeViewMatrix(pose.eye, pose.target, pose.up)
    proj = p.computeProjectionMatrixFOV(pose.fov, aspect, pose.near, pose.far)
    return view, proj


def view_projection(pose: CameraPose, aspect: float = 1.0) -> np.ndarray:
    """The 4x4 matrix (projection @ view) that :func:`render` hands TinyRenderer for ``pose``:
    world homogeneous coordinates -> clip coordinates (OpenGL conventions)."""
    view, proj = _matrices(pose, aspect)
    # PyBullet returns both matrices column-major, as 16 floats.
    return np.asarray(proj, np.float64).reshape(4, 4).T @ np.asarray(view, np.float64).reshape(4, 4).T


def project(pose: CameraPose, points, aspect: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) -> (image coordinates (N, 2), visible (N,) bool) in ``pose``'s image.

    Coordinates are normalised: u (column, rightwards) and v (row, downwards) in [-1, 1], where
    -1 and +1 are the outer edges of the first and last pixel, so pixel (row, col) of an
    S x S image spans u in [2 col / S - 1, 2 (col + 1) / S - 1]. A point behind the near plane
    or outside the image is not visible; its coordinates are clamped to [-1, 1] (a point behind
    the camera is first mirrored through it), so they stay finite for a masked loss.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    clip = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ view_projection(pose, aspect).T
    w = clip[:, 3]
    in_front = w > pose.near
    ndc = clip[:, :2] / np.where(np.abs(w) < 1e-9, 1e-9, np.abs(w))[:, None]
    uv = np.stack([ndc[:, 0], -ndc[:, 1]], axis=1)  # OpenGL y points up; image rows go down
    visible = in_front & np.all(np.abs(uv) <= 1.0, axis=1)
    return np.clip(uv, -1.0, 1.0).astype(np.float32), visible


def render(client, pose: CameraPose, lighting: Lighting, width: int, height: int,
           depth: bool = False, segmentation: bool = False) -> dict[str, np.ndarray]:
    """Render one view. Returns ``{"rgb": uint8 (H,W,3)}`` plus ``depth`` (float32 metres) and
    ``segmentation`` (int32 body ids, -1 background) when asked."""
    view, proj = _matrices(pose, width / height)
    flags = 0 if segmentation else p.ER_NO_SEGMENTATION_MASK
    _, _, rgba, z_buffer, seg = client.getCameraImage(
        width, height, viewMatrix=view, projectionMatrix=proj, renderer=p.ER_TINY_RENDERER,
        flags=flags, lightDirection=list(lighting.direction), lightColor=list(lighting.color),
        lightAmbientCoeff=lighting.ambient, lightDiffuseCoeff=lighting.diffuse,
        lightSpecularCoeff=lighting.specular, shadow=int(lighting.shadows))
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]
    out = {"rgb": np.ascontiguousarray(rgb)}
    if depth:
        zb = np.asarray(z_buffer, dtype=np.float32).reshape(height, width)
        # OpenGL depth buffer -> metric depth along the optical axis.
        out["depth"] = (pose.far * pose.near / (pose.far - (pose.far - pose.near) * zb)
                        ).astype(np.float32)
    if segmentation:
        s = np.asarray(seg, dtype=np.int32).reshape(height, width)
        out["segmentation"] = np.where(s >= 0, s & ((1 << 24) - 1), -1).astype(np.int32)
    return out


def wrist_pose(ee_position: Sequence[float], fov: float = 70.0) -> CameraPose:
    """A camera just above the gripper looking straight down (the fingers stay in view)."""
    x, y, z = (float(v) for v in ee_position)
    return CameraPose(eye=(x + 0.001, y, z + WRIST_OFFSET), target=(x, y, z - 0.2),
                      up=(1.0, 0.0, 0.0), fov=fov, near=0.02, far=2.0)


def jitter_pose(pose: CameraPose, eye_offset: Sequence[float], target_offset: Sequence[float],
                fov_offset: float) -> CameraPose:
    return replace(pose, eye=tuple(np.add(pose.eye, eye_offset).tolist()),
                   target=tuple(np.add(pose.target, target_offset).tolist()),
                   fov=pose.fov + float(fov_offset))
