"""Contention that never clears reaches the shopper as 503 TOO_BUSY, holding nothing."""

from __future__ import annotations

from stockhold.domain.errors import TooBusy


def test_too_busy_reaches_the_shopper_as_503_in_the_error_shape(api, admin, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Through the API: a hot SKU that never clears answers 503 TOO_BUSY and holds nothing."""
    from stockhold.data.transactions import TransactionRunner

    assert admin.put("/stock/HOT", {"onHand": 5}).status == 200

    def always_conflict(self, actions, mark=None, now_ms=0):  # type: ignore[no-untyped-def]
        raise TooBusy("the stock is being changed by many requests at once; retry shortly")

    monkeypatch.setattr(TransactionRunner, "run", always_conflict)
    r = api.post("/reservations", {"cartId": "c-hot", "items": [{"sku": "HOT", "quantity": 1}]})
    assert r.status == 503 and r.error_code == "TOO_BUSY"
    monkeypatch.undo()
    assert admin.get("/stock/HOT").body["available"] == 5
