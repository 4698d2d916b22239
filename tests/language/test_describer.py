"""The state describer says short true sentences in the instruction vocabulary."""

from vla_sim.language import describer
from vla_sim.language.describer import describe, describe_facts, object_phrase


def _obj(color, shape, pos, half):
    return {"position": list(pos), "yaw": 0.0, "color": color, "shape": shape,
            "half_height": half}


def _state(objects, ee=(0.0, 0.0, 0.3), holding=None, instruction="reach the red cube"):
    return {"task": "x", "instruction": instruction, "roles": {}, "objects": objects,
            "ee_position": list(ee), "gripper_opening": 0.04, "holding": holding,
            "success": False}


def test_object_phrases_use_canonical_instruction_words():
    assert object_phrase("red", "cube") == "red cube"
    assert object_phrase("blue", "tray") == "blue bowl"
    assert object_phrase("green", "zone") == "green area"


def test_holding_and_gripper_relations():
    s = _state({"red_cube": _obj("red", "cube", (0.0, 0.0, 0.08), 0.02)}, ee=(0.0, 0.0, 0.09),
               holding="red_cube")
    text = describe(s)
    assert "the gripper is holding the red cube" in text
    assert "the gripper is above the red cube" in text
    assert "the gripper is near the red cube" in text
    assert "the red cube is lifted" in text


def test_object_in_bowl_on_area_on_cube_and_left_of():
    s = _state({
        "red_cube": _obj("red", "cube", (0.1, 0.1, 0.02), 0.02),
        "blue_tray": _obj("blue", "tray", (0.1, 0.1, 0.0), 0.0),
        "green_cube": _obj("green", "cube", (-0.1, -0.1, 0.02), 0.02),
        "yellow_zone": _obj("yellow", "zone", (-0.1, -0.12, 0.001), 0.0),
        "purple_cube": _obj("purple", "cube", (0.3, -0.2, 0.06), 0.02),
        "orange_cube": _obj("orange", "cube", (0.3, -0.2, 0.02), 0.02),
    })
    text = describe(s)
    assert "the red cube is in the blue bowl" in text
    assert "the green cube is on the yellow area" in text
    assert "the purple cube is on the orange cube" in text
    assert "the red cube is left of the green cube" in text
    assert "the green cube is left of the red cube" not in text
    assert "the purple cube is lifted" not in text  # it rests on another cube
    assert "the gripper is near the red cube" not in text  # the gripper is far away
    facts = {f.text: f for f in describe_facts(s)}
    assert facts["the red cube is in the blue bowl"].subject == "red_cube"
    assert facts["the red cube is in the blue bowl"].object == "blue_tray"


def test_far_states_give_no_goal_sentences():
    s = _state({"red_cube": _obj("red", "cube", (0.1, 0.1, 0.02), 0.02),
                "blue_tray": _obj("blue", "tray", (-0.2, -0.2, 0.0), 0.0)})
    assert describe(s) == ["the red cube is on the table"]


def test_geometry_constants_match_the_scene():
    from vla_sim.sim import scene

    assert describer.TRAY_HALF == scene.TRAY_HALF
    assert describer.TRAY_WALL == scene.TRAY_WALL
    assert describer.ZONE_HALF == scene.ZONE_HALF
