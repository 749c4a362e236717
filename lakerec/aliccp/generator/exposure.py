"""Which items a user is shown: sampling the impression propensity P(i | u) of oracle.py."""

from __future__ import annotations

import numpy as np

from lakerec.aliccp.oracle import Oracle
from lakerec.errors import LakeRecError


class Exposure:
    """Samples items from the propensity P(i | u) of oracle.py, over the available items."""

    def __init__(self, oracle: Oracle, available: np.ndarray, mix: float):
        self.oracle = oracle
        self.mix = mix
        self.items = np.flatnonzero(available)
        pop = oracle.item_popularity[self.items]
        self.global_cdf = np.cumsum(pop) / pop.sum()
        by_topic = np.argsort(oracle.item_topic[self.items], kind="stable")
        self.topic_items = self.items[by_topic]
        topics = oracle.item_topic[self.topic_items]
        self.topic_cum = np.cumsum(oracle.item_popularity[self.topic_items])
        k = oracle.n_topics
        self.seg_start = np.searchsorted(topics, np.arange(k), side="left")
        self.seg_end = np.searchsorted(topics, np.arange(k), side="right")
        if np.any(self.seg_end == self.seg_start):
            raise LakeRecError("a topic has no available items: use more --items or fewer --topics")
        before = np.concatenate([[0.0], self.topic_cum])
        self.seg_base = before[self.seg_start]
        self.seg_mass = before[self.seg_end] - self.seg_base
        weights = oracle.user_topic_weights
        self.user_cum = np.cumsum(weights, axis=1)
        self.user_cum[:, -1] = 1.0
        self.user_slots = (weights > 0).sum(axis=1)

    def sample_with(self, users: np.ndarray, r_mix: np.ndarray, r_topic: np.ndarray, r_item: np.ndarray) -> np.ndarray:
        """Item indices for user indices, from three uniforms per draw."""
        out = self.items[np.minimum(np.searchsorted(self.global_cdf, r_item, side="right"), len(self.items) - 1)]
        topical = r_mix < self.mix
        if np.any(topical):
            u = users[topical]
            cum = self.user_cum[u]
            slot = (r_topic[topical][:, None] > cum[:, :-1]).sum(axis=1)
            slot = np.minimum(slot, self.user_slots[u] - 1)
            topic = self.oracle.user_topics[u, slot]
            target = self.seg_base[topic] + r_item[topical] * self.seg_mass[topic]
            pos = np.searchsorted(self.topic_cum, target, side="right")
            pos = np.clip(pos, self.seg_start[topic], self.seg_end[topic] - 1)
            out[topical] = self.topic_items[pos]
        return out

    def sample(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        """Item indices for user indices, drawing the three uniforms per draw from rng."""
        n = len(users)
        return self.sample_with(users, rng.random(n), rng.random(n), rng.random(n))
