"""Routing waiting mail again: the rules of acceptance over the routing now."""

from __future__ import annotations

from mailgate.domain.routing import TenantRouting, route_again

ROUTING = TenantRouting(
    stages={"production": "s-prod", "staging": None},
    accounts={"a-1": ("noreply@acme.example", "s-acct"), "a-2": ("old@acme.example", None)},
    default_server="s-default",
)


def test_stage_then_account_then_default() -> None:
    assert route_again(ROUTING, stage="production", account_id="a-1").server_id == "s-prod"
    by_account = route_again(ROUTING, stage="staging", account_id="a-1")
    assert by_account.server_id == "s-acct" and "noreply@acme.example" in by_account.via
    deleted_account = route_again(ROUTING, stage="staging", account_id="gone")
    assert deleted_account.server_id == "s-default"
    assert deleted_account.via == "the tenant's default server"


def test_an_account_without_a_server_cannot_send_whatever_the_stage() -> None:
    route = route_again(ROUTING, stage="production", account_id="a-2")
    assert route.server_id is None
    assert "old@acme.example has no mail server" in route.reason


def test_no_route_names_the_stage_and_the_fix() -> None:
    bare = TenantRouting(stages={"staging": None}, accounts={}, default_server=None)
    route = route_again(bare, stage="staging", account_id=None)
    assert route.server_id is None
    assert route.reason.startswith("no mail server for stage 'staging'")
    assert "assign one to the stage or mark a default server" in route.reason
    assert (
        "no mail server for this message" in route_again(bare, stage=None, account_id=None).reason
    )
