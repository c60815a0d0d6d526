from tests.e2e.conftest import Stack


def test_the_stack_answers_as_api_gateway_would(stack: Stack) -> None:
    sku = stack.unique_sku(3)
    r = stack.storefront.post("/reservations", {"cartId": "smoke", "items": [{"sku": sku, "quantity": 2}]})
    assert r.status == 201, r.body
    assert stack.storefront.get(f"/stock/{sku}").body["available"] == 1
    assert stack.anonymous.get(f"/stock/{sku}").status == 401
