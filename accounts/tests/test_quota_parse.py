"""Rate-limit parsing, tier detection and the stale-window rules (spec §9.1, §9.2, §12.5)."""
from accounts import pool as P
from accounts.quota import account_tier_from_probe, quota_parse, tier_detect, window_mark_stale

NOW = 1_800_000_000.0


def w(total, remaining=None):
    return P.QuotaWindow(remaining=total if remaining is None else remaining, total=total, window_seconds=7200)


def test_it_parses_the_flat_form():
    got = quota_parse({"windowSizeSeconds": 7200, "remainingQueries": 24, "totalQueries": 50}, mode="auto", now=NOW)
    assert (got.remaining, got.total, got.window_seconds, got.reset_at, got.synced_at, got.source, got.stale) == (
        24, 50, 7200, NOW + 7200, NOW, P.SOURCE_REAL, False)


def test_it_falls_back_for_missing_total_and_window():
    got = quota_parse({"remainingQueries": 12}, mode="fast", now=NOW)
    assert (got.remaining, got.total, got.window_seconds) == (12, 12, 86400)
    got = quota_parse({"remainingQueries": 3}, mode="expert", now=NOW)
    assert got.window_seconds == 7200


def test_it_needs_remaining_queries_and_a_positive_total():
    assert quota_parse({"totalQueries": 50}, mode="auto", now=NOW) is None
    assert quota_parse({"remainingQueries": "5"}, mode="auto", now=NOW) is None
    assert quota_parse({"remainingQueries": 0, "totalQueries": 0, "remainingTokens": 140}, mode="auto", now=NOW) is None
    assert quota_parse(["not", "an", "object"], mode="auto", now=NOW) is None


def test_it_uses_wait_time_for_an_exhausted_window():
    got = quota_parse({"remainingQueries": 0, "totalQueries": 50, "windowSizeSeconds": 7200, "waitTimeSeconds": 90}, mode="auto", now=NOW)
    assert got.remaining == 0 and got.reset_at == NOW + 90


def test_it_detects_tiers_from_auto_totals():
    assert tier_detect({"auto": w(20)}) == "basic"
    assert tier_detect({"auto": w(50)}) == "super"
    assert tier_detect({"auto": w(150)}) == "heavy"
    assert tier_detect({"auto": None, "fast": w(30)}) == "basic"
    assert tier_detect({}) == "basic"


def test_it_detects_heavy_from_a_heavy_window_and_takes_the_lower_tier_on_contradictions():
    assert tier_detect({"auto": w(50), "heavy": w(20)}) == "heavy"
    assert tier_detect({"auto": w(150), "fast": w(140)}) == "super"
    assert tier_detect({"auto": w(50), "fast": w(400)}) == "super"
    assert tier_detect({"auto": w(80), "fast": w(140)}) == "super"  # an anomalous auto total does not vote


def test_a_failed_probe_decrements_real_windows_and_marks_them_estimated():
    real = P.QuotaWindow(remaining=10, total=50, window_seconds=7200, reset_at=NOW + 100, synced_at=NOW - 10, source=P.SOURCE_REAL)
    got = window_mark_stale(real, now=NOW)
    assert (got.remaining, got.source, got.stale, got.reset_at) == (9, P.SOURCE_ESTIMATED, True, NOW + 100)


def test_a_failed_probe_resets_expired_windows_to_full():
    exhausted = P.QuotaWindow(remaining=0, total=50, window_seconds=7200, reset_at=NOW - 1, source=P.SOURCE_DEFAULT)
    got = window_mark_stale(exhausted, now=NOW)
    assert (got.remaining, got.reset_at, got.stale) == (50, None, True)
    real_exhausted = P.QuotaWindow(remaining=0, total=50, window_seconds=7200, reset_at=NOW - 1, source=P.SOURCE_REAL)
    assert window_mark_stale(real_exhausted, now=NOW).remaining == 50


def test_only_a_probe_that_covers_auto_fast_and_heavy_decides_a_tier():
    assert account_tier_from_probe(windows={"auto": w(50), "fast": w(140), "heavy": None}) == "super"
    assert account_tier_from_probe(windows={"auto": None, "fast": w(30), "heavy": None}) == "basic"
    assert account_tier_from_probe(windows={"auto": w(150), "fast": w(400), "heavy": w(20, 0)}) == "heavy"


def test_a_partial_probe_decides_no_tier():
    # the after-use probe of one mode: no auto window in it is no evidence of a basic account
    assert account_tier_from_probe(windows={"expert": w(50)}) is None
    assert account_tier_from_probe(windows={"fast": w(400)}) is None
    assert account_tier_from_probe(windows={"auto": w(50), "fast": w(140)}) is None  # heavy not probed
    assert account_tier_from_probe(windows={}) is None


def test_a_probe_whose_tier_mode_failed_decides_no_tier():
    failed = {"heavy": TimeoutError()}
    assert account_tier_from_probe(windows={"auto": None, "fast": w(30)}, errors=failed) is None
    assert account_tier_from_probe(windows={"auto": w(50), "fast": w(140), "heavy": None}, errors={"auto": TimeoutError()}) is None
