"""The static site's tables are written by the leaderboard's own HTML table writer, and a seed's
training curve is one of them: the site draws no curve itself (issue 23)."""

from __future__ import annotations

from qbench.leaderboard.render import html as leaderboard_html
from qbench.publish import site


def test_a_site_table_goes_through_the_leaderboard_table_writer(monkeypatch):
    calls = []
    writer = leaderboard_html.html_table
    monkeypatch.setattr(site, "html_table",
                        lambda display, **options: calls.append(display) or writer(display, **options))
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


def test_a_seed_curve_is_a_per_epoch_table_of_every_recorded_value():
    curve = [
        {"epoch": 1, "lr": 0.005, "seconds": 94.2, "train_loss": 1.7437, "valid_bpc": 2.1823},
        {"epoch": 2, "lr": 0.005, "seconds": 53.9, "train_loss": 1.3680, "valid_bpc": 2.0546, "note": "<late>"},
    ]
    html = site.curve_table(curve)
    assert html.startswith('<div class="scroll"><table class="sortable curve">')
    head = html.split("<thead>")[1].split("</thead>")[0]
    assert [cell.split(">", 1)[1].split("<", 1)[0] for cell in head.split("<th")[1:]] == [
        "epoch", "lr", "note", "seconds", "train_loss", "valid_bpc"]  # epoch first, then every value recorded
    rows = html.split("<tbody>")[1].split("<tr>")[1:]
    assert len(rows) == 2
    # formatted as the leaderboard formats numbers, the exact value kept to sort by
    assert '<td data-v="2.0546">2.055</td>' in rows[1] and '<td data-v="1">1</td>' in rows[0]
    assert "&lt;late&gt;" in rows[1] and "<late>" not in html  # text a plugin recorded is escaped
    assert "<svg" not in html


def test_a_curve_without_epochs_or_points_still_reads():
    html = site.curve_table([{"train_loss": 2.0}, "not a point", {"train_loss": 1.0}])
    rows = html.split("<tbody>")[1].split("<tr>")[1:]
    assert [row.split("</td>")[0].rsplit(">", 1)[1] for row in rows] == ["1", "2"]  # the point's position
    assert site.curve_table([]) == '<p class="muted">no training curve recorded</p>'
