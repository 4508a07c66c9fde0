from main import page, stats


def test_stats_names_cpu_count():
    assert stats()["CPU count"] >= 1


def test_page_is_a_table():
    assert "<tr><td>a</td><td>1</td></tr>" in page({"a": 1})


def test_page_reloads():
    assert 'content="5"' in page({})
