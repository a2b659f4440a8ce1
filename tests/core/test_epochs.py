"""Per-user cutoffs: the rule that refuses a user's access tokens issued before an instant."""

from __future__ import annotations

import pytest

from latchkey.core.access import AccessTokenIssuer
from latchkey.core.clock import ManualClock
from latchkey.core.epochs import EpochRevocation, UserCutoff, first_issue_at
from latchkey.core.keys import SigningKey


@pytest.mark.parametrize(
    ("iat", "sid", "refused"),
    [
        (999, "s1", True),
        (1000, "s1", True),  # the second of the cutoff, issued before it
        (1001, "s1", False),
        (999, "kept", False),  # the exempt session
    ],
)
def test_cutoff_refuses_tokens_issued_before_it(iat: int, sid: str, refused: bool) -> None:
    """A cutoff at 1000.4 refuses every iat below it except the exempt session's."""
    assert UserCutoff(1000.4, "kept").refuses(sid, iat) is refused


def test_a_cutoff_on_a_whole_second_keeps_tokens_of_that_second() -> None:
    """Cut at exactly 1000.0: a token of iat 1000 was issued at or after it; 999 before."""
    assert not UserCutoff(1000.0).refuses("s", 1000)
    assert UserCutoff(1000.0).refuses("s", 999)


def test_first_issue_at_is_the_next_whole_second() -> None:
    assert first_issue_at(1000.4) == 1001.0
    assert first_issue_at(1000.0) == 1000.0
    assert first_issue_at(None) < 0


def test_merged_keeps_the_later_cutoff_and_only_a_shared_exemption() -> None:
    early, late = UserCutoff(100.0, "a"), UserCutoff(200.0, "b")
    assert early.merged(late) == late
    assert late.merged(early) == late
    assert UserCutoff(100.0, "a").merged(UserCutoff(100.0, "a")) == UserCutoff(100.0, "a")
    assert UserCutoff(100.0, "a").merged(UserCutoff(100.0, "b")) == UserCutoff(100.0)
    assert UserCutoff(100.0, "a").merged(UserCutoff(100.0)) == UserCutoff(100.0)


def test_epoch_revocation_names_its_cutoff() -> None:
    revocation = EpochRevocation("u", 3, 1000.5, "password_changed", kept_sid="k", sessions=7)
    assert revocation.cutoff == UserCutoff(1000.5, "k")


def test_iat_is_the_instant_given_rounded_down() -> None:
    """The issuer dates a token by the check that let it out (``at``), in whole seconds."""
    clock = ManualClock(2000.9)
    issuer = AccessTokenIssuer(
        SigningKey.generate("ES256"), issuer="i", audience="a", ttl=60, clock=clock
    )
    issued = issuer.issue(subject="u", sid="s", scope="", auth_time=0, at=1999.99)
    assert issued.expires_at == 1999 + 60
    assert issuer.issue(subject="u", sid="s", scope="", auth_time=0).expires_at == 2000 + 60
