"""The MQTT link's outbox on its own, without a broker: order, bound, resends, late rejects."""

from __future__ import annotations

from edge.outbox import Outbox

NOW = 1_800_000_000.0


def fill(outbox: Outbox, count: int, deadline: float = NOW + 10) -> list[bool]:
    return [outbox.put(f"d{n}".encode(), f"late{n}".encode(), deadline, ttl_s=10) for n in range(count)]


def test_decisions_leave_in_order_and_a_full_outbox_refuses_and_counts():
    outbox = Outbox(size=3)
    assert fill(outbox, 5) == [True, True, True, False, False]
    assert outbox.dropped == 2 and len(outbox) == 3
    sent = []
    while outbox.can_send(window=16):
        item, payload, _expiry = outbox.take(at=NOW)
        outbox.sent(len(sent) + 1, item)
        sent.append(payload)
    assert sent == [b"d0", b"d1", b"d2"]
    assert len(outbox) == 3  # in flight until acknowledged
    assert outbox.acknowledged(1, refused=False) is None and len(outbox) == 2


def test_no_more_than_the_window_is_in_flight():
    outbox = Outbox(size=10)
    fill(outbox, 5)
    for message_id in (1, 2):
        outbox.sent(message_id, outbox.take(at=NOW)[0])
    assert not outbox.can_send(window=2)
    outbox.acknowledged(1, refused=False)
    assert outbox.can_send(window=2)


def test_what_was_in_flight_goes_again_first_and_in_order_on_a_new_session():
    outbox = Outbox(size=10)
    fill(outbox, 4)
    for message_id in (7, 8):
        outbox.sent(message_id, outbox.take(at=NOW)[0])
    outbox.send_again()
    assert [outbox.take(at=NOW)[1] for _ in range(4)] == [b"d0", b"d1", b"d2", b"d3"]


def test_past_its_deadline_a_decision_goes_out_as_its_late_reject_and_is_counted():
    outbox = Outbox(size=10)
    fill(outbox, 1, deadline=NOW + 2.5)
    fill(outbox, 1, deadline=NOW - 0.1)
    _item, payload, expiry = outbox.take(at=NOW)
    assert (payload, expiry) == (b"d0", 3)  # what is left of its time, rounded up
    _item, payload, expiry = outbox.take(at=NOW)
    assert (payload, expiry) == (b"late0", 10) and outbox.late == 1


def test_a_decision_the_broker_refuses_is_returned_and_counted_as_dropped():
    outbox = Outbox(size=10)
    fill(outbox, 1)
    item, _payload, _expiry = outbox.take(at=NOW)
    outbox.sent(5, item)
    assert outbox.acknowledged(5, refused=True) == item
    assert outbox.dropped == 1 and len(outbox) == 0


def test_a_decision_being_handed_to_paho_still_counts_as_waiting():
    """Between take() and sent() the sender is inside paho's publish, outside the link's lock: the queue depth
    (stats, /metrics) must not dip, nor a full outbox take one more meanwhile."""
    outbox = Outbox(size=2)
    fill(outbox, 2)
    item, _payload, _expiry = outbox.take(at=NOW)
    assert len(outbox) == 2
    assert fill(outbox, 1) == [False]  # still full
    outbox.sent(7, item)
    assert len(outbox) == 2
    outbox.acknowledged(7, refused=False)
    assert len(outbox) == 1
