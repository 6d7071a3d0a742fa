import numpy as np
import pytest
from conftest import make_frame

from carla_gym.sim import BACKENDS, Control, Event, EventKind, Frame, Route, make_backend


def test_control_accepts_valid_values_and_names_bad_fields():
    c = Control(steer=-0.5, throttle=1, brake=0)
    assert (c.steer, c.throttle, c.brake) == (-0.5, 1.0, 0.0) and isinstance(c.throttle, float)
    with pytest.raises(ValueError, match="Control.steer must be a finite number"):
        Control(steer=float("nan"))
    with pytest.raises(ValueError, match=r"Control.throttle must lie in \[0, 1\]"):
        Control(throttle=-0.1)
    with pytest.raises(ValueError, match="Control.brake"):
        Control(brake=1.5)


@pytest.mark.parametrize("other, category", [(4, "pedestrian"), (10, "vehicle"), (1, "static"), (5, "static")])
def test_collision_category_follows_the_leaderboard(other, category):
    event = Event(EventKind.COLLISION, other_class=other, intensity=120.0)
    assert event.category == category
    assert "collision with" in str(event)
    assert Event(EventKind.LANE_INVASION, detail="solid").category is None


def test_route_completion():
    assert Route(np.zeros((0, 2)), distance_left=25.0, length=100.0).completion == pytest.approx(0.75)
    assert Route(np.zeros((0, 2)), distance_left=0.0, length=0.0).completion == 1.0


def test_frame_checks_shapes_and_reports_events():
    frame = make_frame(0)
    assert frame.size == (8, 16)
    frame.events.append(Event(EventKind.OFF_ROAD))
    assert frame.has(EventKind.OFF_ROAD) and not frame.has(EventKind.COLLISION)
    with pytest.raises(ValueError, match="Frame.semantic"):
        Frame(**{**frame.__dict__, "semantic": np.zeros((8, 15), np.uint8)})
    with pytest.raises(ValueError, match="Frame.depth must be .* float32"):
        Frame(**{**frame.__dict__, "depth": frame.depth.astype(np.float64)})


def test_make_backend_lists_known_names():
    assert set(BACKENDS) == {"embedded", "carla"}
    with pytest.raises(ValueError, match="known backends: carla, embedded"):
        make_backend("unreal")


def test_backend_classes_load_lazily_from_the_package():
    from carla_gym.sim import CarlaBackend, EmbeddedBackend, SimulatorBackend

    assert issubclass(EmbeddedBackend, SimulatorBackend) and EmbeddedBackend.name == "embedded"
    assert issubclass(CarlaBackend, SimulatorBackend) and CarlaBackend.name == "carla"
