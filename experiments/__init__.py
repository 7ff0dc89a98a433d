"""Acquisitions, experiments, addons and directors (being built); ``experiments.demo``."""
