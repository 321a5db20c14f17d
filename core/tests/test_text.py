"""text_clip: operator messages are shortened at sentence ends, never mid-word."""
from core.text import text_clip


def test_it_keeps_a_message_that_fits_on_one_line():
    assert text_clip("Upstream said no.\n  Try later.", 80) == "Upstream said no. Try later."


def test_it_drops_whole_sentences_past_the_limit():
    text = "Upstream rejected the session (HTTP 401). The operator must import a fresh SSO token for this account."
    assert text_clip(text, 60) == "Upstream rejected the session (HTTP 401)."


def test_a_first_sentence_longer_than_the_limit_ends_at_a_word_with_an_ellipsis():
    got = text_clip("one two three four five six seven eight nine ten", 20)
    assert got.endswith(" …") and len(got) <= 20 and got.removesuffix(" …") in "one two three four five"
