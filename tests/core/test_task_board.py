"""The task board counts a restarted site back in: what its lost process held fails at once,
what is still queued is the new process's."""

from __future__ import annotations

from ember.common.messages import TaskResult
from ember.common.model import FLModel
from ember.runtime.board import TaskBoard


def test_a_restarted_site_rejoins_its_taken_task_fails_and_it_gets_the_next_one() -> None:
    board = TaskBoard(["site-1", "site-2"])
    posted = board.post("train", FLModel(current_round=0), ["site-1", "site-2"], 30.0)
    taken = board.next_task("site-2", 0.0)
    assert not isinstance(taken, str)
    assert taken is not None
    board.fail_site("site-2", "connection lost")
    assert board.alive_sites() == ["site-1"]
    assert board.rejoin("site-2")
    assert board.alive_sites() == ["site-1", "site-2"]
    mine = board.next_task("site-1", 0.0)
    assert not isinstance(mine, str)
    assert mine is not None
    assert board.submit(TaskResult(mine.task_id, "site-1", data=FLModel()))
    out = board.collect(posted, 1, lambda site, result: None)
    assert out.responded == ["site-1"]
    assert "site-2 restarted while it ran this task" in out.failed["site-2"]
    # the next round's task reaches the rejoined site
    board.post("train", FLModel(current_round=1), ["site-1", "site-2"], 30.0)
    again = board.next_task("site-2", 0.0)
    assert not isinstance(again, str)
    assert again is not None
    assert again.data is not None
    assert again.data.current_round == 1


def test_a_live_or_finished_site_or_an_ended_job_does_not_rejoin() -> None:
    board = TaskBoard(["site-1", "site-2"])
    assert not board.rejoin("site-1")  # alive
    board.site_finished("site-1")
    assert not board.rejoin("site-1")  # ended its script
    board.fail_site("site-2", "lost")
    board.end("done")
    assert not board.rejoin("site-2")
