"""Reasoning display rules (docs/upstream-protocol.md §4.8)."""
from __future__ import annotations

from gateway.translate.reasoning import ReasoningFormatter, tool_line


def test_tool_cards_become_one_line_per_tool():
    assert tool_line("web_search", {"query": "latest Python release"}) == "🔍 web_search: latest Python release"
    assert tool_line("browse_page", {"url": "https://e.x"}) == "🌐 browse_page: https://e.x"
    assert tool_line("code_execution", {"code": "print(1)"}) == "💻 code_execution"
    assert tool_line("search_images", {"query": "cats"}) == "🖼️ search_images: cats"
    assert tool_line("x_search", {"query": "grok"}) == "🔍 x_search: grok"
    assert tool_line("something_new", {}) == "🔧 something_new"


def test_header_and_summary_lines_get_a_newline_and_lose_the_bullet():
    f = ReasoningFormatter()
    assert f.thinking("- Checking", "summary", None) == "Checking\n"
    assert f.thinking("- Checking", "summary", None) == ""  # exact repeat of the previous line
    assert f.thinking("Next", "header", None) == "Next\n"
    assert f.thinking("Checking", "header", None) == "Checking\n"  # not the previous line: shown


def test_raw_fragments_pass_through_and_a_following_line_starts_on_a_new_line():
    f = ReasoningFormatter()
    assert f.thinking("- part", "analysis", None) == "- part"
    assert f.thinking("ial wo", "", None) == "ial wo"
    assert f.thinking("Header", "header", None) == "\nHeader\n"


def test_an_agent_header_is_inserted_when_the_rollout_changes():
    f = ReasoningFormatter()
    assert f.thinking("A", "header", "Agent 1") == "\n[Agent 1]\nA\n"
    assert f.thinking("B", "header", "Agent 1") == "B\n"
    assert f.thinking("B", "header", "Agent 2") == "\n[Agent 2]\nB\n"  # a new agent may repeat a line


def test_the_summary_prefers_headers_and_first_sentences_and_is_bounded():
    f = ReasoningFormatter()
    for i in range(10):
        f.thinking(f"Step {i}", "header", None)
    f.thinking("Long summary sentence. Second sentence.", "summary", None)
    summary = f.summary(max_items=4)
    assert summary == "- Step 0\n- Step 1\n- Step 2\n- Step 3\n"
    g = ReasoningFormatter()
    g.thinking("Only a summary here. More.", "summary", None)
    g.thinking("raw thinking text. more raw", "analysis", None)
    assert g.summary() == "- Only a summary here.\n- raw thinking text.\n- more raw\n"
