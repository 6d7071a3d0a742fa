import pytest

from agents.scoring import EpisodeResult, summarize


def test_driving_score_of_a_scripted_episode_by_hand():
    # 80% of the route, one vehicle collision, two red lights, one lane invasion (no factor):
    # 0.8 * 0.60 * 0.70 * 0.70 = 0.2352
    e = EpisodeResult(
        route_completion=0.8, distance_m=400.0, infractions={"collision_vehicle": 1, "red_light": 2, "lane_invasion": 1}
    )
    assert e.infraction_penalty == pytest.approx(0.294)
    assert e.driving_score == pytest.approx(0.2352)


def test_summary_means_and_rates_per_km():
    a = EpisodeResult(1.0, 600.0, {"collision_pedestrian": 1})  # score 0.5
    b = EpisodeResult(0.5, 400.0, {"collision_static": 1, "lane_invasion": 3})  # score 0.325
    s = summarize([a, b])
    assert s["driving_score"] == pytest.approx((0.5 + 0.325) / 2)
    assert s["route_completion"] == pytest.approx(0.75)
    assert s["distance_km"] == pytest.approx(1.0)
    assert s["collisions_per_km"] == pytest.approx(2.0)
    assert s["infractions_per_km"]["lane_invasion"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="no episodes"):
        summarize([])


def test_summary_records_the_penalty_factors_it_scored_with():
    s = summarize([EpisodeResult(1.0, 100.0, {"red_light": 1})])
    assert s["penalty_factors"] == {
        "collision_pedestrian": 0.50,
        "collision_vehicle": 0.60,
        "collision_static": 0.65,
        "red_light": 0.70,
    }
    assert s["driving_score"] == pytest.approx(s["penalty_factors"]["red_light"])
