"""Token list parsing (import files and the admin paste box)."""
from accounts.tokenfile import tokens_parse

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzZXNzaW9uX2lkIjoiYWJjIn0.sig-Ab_12"


def test_it_strips_prefixes_whitespace_and_zero_width_characters():
    data = "\ufeffsso=" + JWT + "\n  \u200bsim-super-a\u200d  \n\"sim-basic-quoted\"\nsso-rw=x; sso=sim-heavy-cookie; other=1\n"
    got = [(t.line, t.token) for t in tokens_parse(data)]
    assert got == [(1, JWT), (2, "sim-super-a"), (3, "sim-basic-quoted"), (4, "sim-heavy-cookie")]


def test_it_skips_blank_lines_and_comments_and_keeps_line_numbers():
    data = b"# header\n\n   \nsim-super-one\r\n# sim-super-commented\nsim-super-two\n"
    assert [(t.line, t.token) for t in tokens_parse(data)] == [(4, "sim-super-one"), (6, "sim-super-two")]


def test_it_reports_binary_junk_by_line_number():
    data = b"\xef\xbb\xbfsim-super-one\n\xff\xfe\x00\x01garbage\nab\x00cdefghij\nsim-super-two\nshort\nhas space inside but ok\n"
    parsed = tokens_parse(data)
    good = [(t.line, t.token) for t in parsed if t.token]
    bad = {t.line: t.error for t in parsed if t.error}
    assert good == [(1, "sim-super-one"), (4, "sim-super-two"), (6, "hasspaceinsidebutok")]
    assert set(bad) == {2, 3, 5}
    assert "UTF-8" in bad[2] and "control" in bad[3] and "too short" in bad[5]


def test_it_drops_non_ascii_copy_paste_artefacts():
    assert [t.token for t in tokens_parse("sim-super-\u00a0nbsp\u2019")] == ["sim-super-nbsp"]


def test_it_rejects_characters_a_cookie_cannot_hold():
    parsed = tokens_parse('abc,defghijk\nabc\\defghijk\n')
    assert [t.line for t in parsed if t.error] == [1, 2]


def test_it_reports_lines_that_cannot_be_session_tokens():
    parsed = tokens_parse("not a token!!\nsee (my) notes\nsim-super-ok\n")
    assert [(t.line, t.token) for t in parsed if t.token] == [(3, "sim-super-ok")]
    bad = {t.line: t.error for t in parsed if t.error}
    assert set(bad) == {1, 2}
    assert bad[1].startswith("not a session token: '!' found")


def test_it_accepts_jwts_base64_and_the_simulators_directive_tokens():
    tokens = [JWT, "eyJ0eXAiOiJKV1QifQ==.YWJj+ZGVm/Z2hp.x%2Fy", "sim-super-a~drop@5", "sim-basic-x~inband=line@2~http=503"]
    assert [t.token for t in tokens_parse("\n".join(tokens))] == tokens
