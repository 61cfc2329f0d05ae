"""A batch that does not follow its instrument's last one ends the fold: the delivery
missed a message (the journal has none missing), and the projector reads on from
PostgreSQL's position. Only a gap seen again from there is the journal's own, projected
past (`tests/trades/test_projection.py` runs that through real servers)."""

import pytest
from nats.aio.msg import Msg

from common import subjects
from common.messages import EventBatch, encoder
from svc_trades.changes import Fold, Gap, SequenceGap
from tests.trades.journal import INSTRUMENTS, random_batches


def delivered(batches: list[EventBatch]) -> list[Msg]:
    """The batches as a JetStream consumer hands them over, one message each."""
    return [Msg(_client=None,  # type: ignore[arg-type]  # never acknowledged here
                subject=subjects.events(batch.symbol),
                reply=f"$JS.ACK.{subjects.STREAM}.projection.1.{n}.{n}.0.0",
                data=encoder.encode(batch))
            for n, batch in enumerate(batches, 1)]


def test_a_batch_missing_from_the_delivery_ends_the_fold() -> None:
    batches = [batch for batch in random_batches(60, seed=3) if batch.symbol == "DEFAULT"]
    missing = batches[4]
    fold = Fold(0, {}, {}, INSTRUMENTS)
    with pytest.raises(SequenceGap) as raised:
        fold.feed(delivered(batches[:4] + batches[5:]))
    assert raised.value.gap == Gap("DEFAULT", missing.seq - 1, missing.seq + 1)


def test_a_gap_seen_again_is_the_journals_own_and_is_projected_past() -> None:
    batches = [batch for batch in random_batches(60, seed=3) if batch.symbol == "DEFAULT"]
    seqs: dict[str, int] = {}
    fold = Fold(0, seqs, {}, INSTRUMENTS, {Gap("DEFAULT", 0, batches[3].seq)})
    fold.feed(delivered(batches[3:]))
    changes = fold.changes()
    assert (changes.gaps, seqs["DEFAULT"]) == (1, batches[-1].seq)
