"""GC settings for processes that are a node."""

from __future__ import annotations


def test_tune_gc_freezes_startup_objects_and_raises_thresholds() -> None:
    import gc

    from node.runtime.gctune import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        tune_gc()  # idempotent
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
