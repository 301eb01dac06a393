"""Damaged or mis-addressed storage never costs the published journal (found by the crash
acceptance pass): a lost CURRENT, a damaged one, DIR/lake given for DIR."""

from __future__ import annotations

import shutil

import pytest

from flows import run_notes, steps
from parsers.lake import data_dir
from pipeline import publish as pub

from .conftest import BASE, FakeEngine, amounts_frame


def credit(root, **kw):
    return steps.credit(root, 2024, compute_fn=FakeEngine(amounts_frame(BASE)),
                        as_of=pub.dt.date(2025, 5, 2), **kw)


def test_a_lost_current_fails_the_run_and_removes_nothing(lake):
    first, second = credit(lake), credit(lake)
    (lake / pub.CURRENT).unlink()
    with pytest.raises(pub.PublishError, match="does not list 2 published run"):
        credit(lake)
    assert (lake / "runs" / first.run_id).is_dir() and (lake / "runs" / second.run_id).is_dir()
    assert pub.entries_path(lake, first.run_id).exists()


def test_a_killed_runs_leftover_is_still_swept(lake):
    first = credit(lake)
    current = (lake / pub.CURRENT).read_text()
    second = credit(lake)
    (lake / pub.CURRENT).write_text(current)  # killed between its rename and CURRENT:
    (lake / "runs" / second.run_id / pub.PUBLISHED_MARK).unlink()  # never committed
    third = credit(lake)  # the leftover (next sequence number) is swept, the run redone
    assert third.run_id == second.run_id  # same inputs, same sequence number: same run
    assert [r["run_id"] for r in pub.read_current(lake)["published"]] == [first.run_id,
                                                                          third.run_id]


def test_a_damaged_current_is_named(lake):
    credit(lake)
    (lake / pub.CURRENT).write_text('{"run_id": ')
    with pytest.raises(pub.PublishError, match="CURRENT is damaged"):
        credit(lake)


def test_dir_lake_given_for_dir_locks_and_archives_in_dir(lake, tmp_path):
    assert data_dir(lake / "lake") == lake and data_dir(lake) == lake
    with pub.run_lock(lake):  # a crediting of DIR holds DIR/.lock
        with pytest.raises(pub.PublishError, match=str(lake / ".lock")):
            with pub.run_lock(lake / "lake"):
                pass
    single = tmp_path / "old" / "lake"  # an old single-folder DIR named lake: itself
    shutil.copytree(lake / "lake", single)
    (single / "runs").mkdir()
    assert data_dir(single) == single


def test_a_killed_runs_temporary_files_are_removed(lake):
    credit(lake)
    leftovers = [lake / ".CURRENT.tmp-999", lake / ".cpf.duckdb.tmp-999"]
    for f in leftovers:
        f.write_text("half written")
    credit(lake)
    assert not any(f.exists() for f in leftovers) and (lake / pub.CURRENT).exists()


def test_a_run_dated_before_the_previous_one_says_so(lake):
    credit(lake)
    out = steps.credit(lake, 2024, compute_fn=FakeEngine(amounts_frame(BASE)),
                       as_of=pub.dt.date(2025, 4, 20))
    assert run_notes.as_of_note(out.run_dir).startswith(
        "this run is dated 2025-04-20 (--as-of), before the run published before it")


def test_a_lost_current_with_one_run_or_an_older_copy_fails_too(lake):
    """Round-2 acceptance pass: the run right after the last one in CURRENT was taken for a
    killed publication and replaced; the PUBLISHED mark tells them apart."""
    only = credit(lake)
    (lake / pub.CURRENT).unlink()
    with pytest.raises(pub.PublishError, match="does not list 1 published run"):
        credit(lake)
    assert (lake / "runs" / only.run_id / pub.PUBLISHED_MARK).exists()
    (lake / pub.CURRENT).write_text('{"a": 1}')
    with pytest.raises(pub.PublishError, match="not a CURRENT record"):
        credit(lake)


def test_runs_published_before_the_mark_get_it_from_the_next_run(lake):
    old = credit(lake)
    (lake / "runs" / old.run_id / pub.PUBLISHED_MARK).unlink()  # published by older code
    credit(lake)
    assert (lake / "runs" / old.run_id / pub.PUBLISHED_MARK).exists()
