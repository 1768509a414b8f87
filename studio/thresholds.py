"""Kept only for benchmarks/failure_browser.py and tests/test_app_faults.py: the app's thresholds are
detector.thresholds.Thresholds (import it from there); delete this file once those two do."""
from detector.thresholds import Thresholds

__all__ = ["Thresholds"]
