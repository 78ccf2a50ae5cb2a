"""sync.schema: a model's history translates payloads up and states down."""

from __future__ import annotations

import pytest

from sync.schema import (
    Added,
    Changed,
    History,
    Removed,
    Renamed,
    Retyped,
    Split,
    TranslationError,
)


def history() -> History:
    return History.of(
        "shop.item",
        [
            Renamed(2, "sku", "code"),
            Retyped(3, "minutes", up=lambda m: m / 60, down=lambda h: round(h * 60)),
            Removed(4, "legacy", default="n/a"),
            Split(
                5,
                "size",
                into=("width", "height"),
                split=lambda s: dict(zip(("width", "height"), map(int, s.split("x")), strict=True)),
                join=lambda p: f"{p['width']}x{p['height']}",
            ),
            Added(6, "colour", default="black"),
            Changed(
                7,
                up=_tags_up,
                down=_tags_down,
                text="tag became a list",
                added=("tags",),
            ),
        ],
    )


def _tags_up(payload, creating):
    if "tag" in payload:
        payload["tags"] = payload.pop("tag").split()
    return payload


def _tags_down(data):
    data["tag"] = " ".join(data.pop("tags"))
    return data


NOW = {
    "code": "A1",
    "minutes": 1.5,
    "width": 2,
    "height": 3,
    "colour": "red",
    "tags": ["x", "y"],
}


def test_each_older_version_sees_its_own_shape():
    h = history()
    assert h.version == 7
    assert h.downgrade(NOW, 7) == NOW
    assert h.downgrade(NOW, 6) == {**_without(NOW, "tags"), "tag": "x y"}
    assert h.downgrade(NOW, 5) == {**_without(NOW, "tags", "colour"), "tag": "x y"}
    assert h.downgrade(NOW, 1) == {
        "sku": "A1",
        "minutes": 90,
        "legacy": "n/a",
        "size": "2x3",
        "tag": "x y",
    }
    assert h.newer_fields(5) == {"colour", "tags"}
    assert h.newer_fields(1) == {"width", "height", "colour", "tags"}


def test_an_old_create_is_upgraded_whole_and_an_old_update_only_where_it_says():
    h = history()
    old = {"sku": "B2", "minutes": 30, "legacy": "x", "size": "4x5", "tag": "a"}
    assert h.upgrade(old, 1, creating=True) == {
        "code": "B2",
        "minutes": 0.5,
        "width": 4,
        "height": 5,
        "colour": "black",
        "tags": ["a"],
    }
    assert h.upgrade({"sku": "C3"}, 1, creating=False) == {"code": "C3"}
    # From a later version only the later steps apply.
    assert h.upgrade({"code": "D4", "size": "1x1"}, 5, creating=False) == {
        "code": "D4",
        "size": "1x1",
    }


def test_a_step_that_fails_names_itself():
    with pytest.raises(TranslationError, match=r"version 4 \(size split into width, height\)"):
        history().upgrade({"size": "big"}, 1, creating=False)


def test_the_payload_given_is_not_changed():
    payload = {"sku": "A"}
    history().upgrade(payload, 1, creating=True)
    assert payload == {"sku": "A"}


@pytest.mark.parametrize("versions", [[3], [2, 2], [2, 4]])
def test_versions_go_up_one_at_a_time_from_two(versions):
    with pytest.raises(ValueError, match="should be version"):
        History.of("shop.item", [Renamed(v, "a", "b") for v in versions])


def test_history_entries_must_be_steps():
    with pytest.raises(TypeError):
        History.of("shop.item", [lambda payload: payload])  # type: ignore[list-item]


def test_discovery_lists_each_step():
    assert history().describe()[0] == {
        "version": 2,
        "kind": "renamed",
        "summary": "sku renamed to code",
    }
    assert history().describe()[-1]["summary"] == "tag became a list"


def _without(data, *names):
    return {k: v for k, v in data.items() if k not in names}
