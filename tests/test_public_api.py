from __future__ import annotations

import inspect

import embedtasks


def test_all_is_sorted_and_unique():
    assert embedtasks.__all__ == sorted(set(embedtasks.__all__))


def test_all_is_complete():
    public = {
        name
        for name, value in vars(embedtasks).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert public <= set(embedtasks.__all__)
    for name in embedtasks.__all__:
        assert hasattr(embedtasks, name), name
