"""The cameras an env can render and the observation key of each: plain data, defined once
(the env, the policies' observation spaces and the goal-state labels all read it)."""

CAMERA_KEYS: dict[str, str] = {"front": "image", "wrist": "wrist_image"}
"""Camera name -> observation key (the env names the wrist camera's image ``wrist_image``)."""
CAMERAS: tuple[str, ...] = tuple(CAMERA_KEYS)
