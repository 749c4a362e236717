"""The knobs of the generative model; the defaults give the published rates."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GeneratorParams:
    """Knobs of the generative model (defaults give the published rates)."""

    topics: int = 32
    session_min: int = 20  # impressions per session (one common line each)
    session_max: int = 60
    cold_user_share: float = 0.05  # users and items that appear only in the test split
    cold_item_share: float = 0.05
    popularity_exponent: float = 1.2  # pi ~ 1 / (rank + offset) ** exponent
    popularity_offset: float = 20.0
    interest_exposure: float = 0.3  # share of impressions drawn from the user's topics
    affinity_weight: float = 3.0  # click logit per unit of affinity
    quality_sd: float = 0.5
    position_probs: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    position_effects: tuple[float, ...] = (0.0, -0.3, -0.6, -0.9)
    click_rate: float = 0.039
    conversion_rate_of_clicks: float = 0.0055  # share of clicks that convert (--conversion-rate)
    # Conversion logit given a click (see oracle.py): an item-category effect, item noise,
    # an effect per level of user_consumption_2 (absent: 0) and affinity.
    category_conversion_sd: float = 0.6
    item_conversion_sd: float = 0.3
    consumption_conversion_effects: tuple[float, ...] = (-0.6, -0.2, 0.2, 0.6)
    conversion_affinity_weight: float = 1.0
    conversion_without_click_rate: float = 1e-5
    history_min: int = 40  # items behind one session's history lines
    history_max: int = 100
    history_pool: int = 256  # a user's stable pool of past items
    history_noise: float = 0.1  # share of pool items drawn from global popularity
    history_max_ids: int = 40  # ids kept per history field (by count)
    decayed_weight_share: float = 0.1  # history weights that are the log of a non-integer
    calibration_draws: int = 200_000
