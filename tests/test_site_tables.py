"""The static site's tables are written by the leaderboard's own HTML table writer (issue 23)."""

from __future__ import annotations

from qbench.leaderboard.render import html as leaderboard_html
from qbench.publish import site


def test_a_site_table_goes_through_the_leaderboard_table_writer(monkeypatch):
    calls = []
    writer = leaderboard_html.html_table
    monkeypatch.setattr(site, "html_table", lambda display: calls.append(display) or writer(display))
    site.rows_table(["label"], [{"label": "a"}])
    assert len(calls) == 1 and [c.title for c in calls[0].columns] == ["label"]


def test_a_site_table_escapes_text_sorts_numbers_and_links_every_row():
    rows = [{"label": "<b>gru</b>", "value": 1.5, "tags": ["x"]}, {"label": "lstm", "value": None, "tags": None}]
    html = site.rows_table(["label", "value", "tags"], rows, links={0: "configs/a&b.html"})
    assert '<td class="text">&lt;b&gt;gru&lt;/b&gt;</td>' in html
    assert '<td data-v="1.5">1.5</td>' in html and '<td data-v=""></td>' in html
    assert '<td class="text">[&quot;x&quot;]</td>' in html
    assert '<a href="configs/a&amp;b.html">page</a>' in html
    body = html.split("<tbody>")[1]
    assert [row.count("<td") for row in body.split("<tr>")[1:]] == [4, 4]  # a row without a page: an empty cell
