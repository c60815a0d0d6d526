from tests.e2e.conftest import Stack


def test_the_stack_answers_as_api_gateway_would(stack: Stack) -> None:
    sku = stack.unique_sku(3)
    r = stack.storefront.post("/reservations", {"cartId": "smoke", "items": [{"sku": sku, "quantity": 2}]})
    assert r.status == 201, r.body
    assert stack.storefront.get(f"/stock/{sku}").body["available"] == 1
    assert stack.anonymous.get(f"/stock/{sku}").status == 401


def test_the_demo_store_keeps_a_sku_in_two_places_and_a_large_line_splits(stack: Stack) -> None:
    """make run's seed: leeds-dc beside default, HOODIE 2 + 3 (README, docs/local-stack.md)."""
    locations = stack.storefront.get("/locations").body["items"]
    assert [x["locationId"] for x in locations] == ["default", "leeds-dc"]
    held = stack.storefront.post(
        "/reservations", {"cartId": "smoke-split", "items": [{"sku": "HOODIE", "quantity": 4}]}
    )
    assert held.status == 201, held.body
    (line,) = held.body["items"]
    assert line["allocations"] == [{"locationId": "default", "quantity": 2}, {"locationId": "leeds-dc", "quantity": 2}]
    stock = stack.storefront.get("/stock/HOODIE").body
    assert {x["locationId"]: x["available"] for x in stock["locations"]} == {"default": 0, "leeds-dc": 1}
    assert (
        stack.storefront.post(f"/reservations/{held.body['reservationId']}/release", {"reason": "cancelled"}).status
        == 200
    )
    assert stack.storefront.get("/stock/HOODIE").body["available"] == 5
