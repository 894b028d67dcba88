"""The state machines of enrollments, touches, inbound messages and handoffs.

A touch (see docs/send-state-machine.md):
    claimed --(enrollment still active, recorded Message-ID)--> sending --250--> sent
    claimed --(enrollment stopped / suppressed / `when` false)--> skipped
    sending --4xx / dropped--> retry (claimed again later, same Message-ID)
    sending --5xx--> failed (address bounced and suppressed)
    sending --(worker died: in doubt)--> sent (found in Sent folder) | unknown (held for the
        operator) | claimed again (sequence says `in_doubt: resend`)
    failed --(operator: `nurture touches retry ID`, cause fixed)--> claimed (rendered again)
    task: open --done--> done
"""

from __future__ import annotations

from enum import StrEnum


class EnrollmentState(StrEnum):
    active = "active"
    paused = "paused"  # auto-reply: resumes at paused_until
    finished = "finished"
    stopped = "stopped"  # stop_reason says why (bounce, unsubscribe, manual, replied)
    handed_off = "handed_off"  # a human replied: a rep owns the lead now


LIVE_ENROLLMENT_STATES = (EnrollmentState.active, EnrollmentState.paused)
# Stops an operator can undo with `nurture touches retry ID` once the cause is fixed: the touch
# could not be made (a template, a lead's missing field) or the relay refused the message
# itself. Not a bounce: that address refused mail and is suppressed.
RETRYABLE_STOPS = ("touch_failed", "send_failed")


class TouchState(StrEnum):
    claimed = "claimed"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    skipped = "skipped"
    unknown = "unknown"  # in doubt after a crash mid-send: held for the operator
    open = "open"  # a manual task waiting for a rep
    done = "done"  # a manual task completed


class InboundKind(StrEnum):
    human_reply = "human_reply"
    auto_reply = "auto_reply"
    bounce_hard = "bounce_hard"
    bounce_soft = "bounce_soft"
    unsubscribe = "unsubscribe"
    other = "other"


class HandoffState(StrEnum):
    open = "open"
    claimed = "claimed"
    closed = "closed"


class HandoffOutcome(StrEnum):
    won = "won"
    lost = "lost"
    not_now = "not_now"
    renurtured = "renurtured"
