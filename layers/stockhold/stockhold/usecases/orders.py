"""Orders: read, fulfil (shipped), cancel. PLACED -> FULFILLED | CANCELLED exactly once."""

from __future__ import annotations

from stockhold.data.repositories import OrderRepository
from stockhold.data.unit import UnitOfWork
from stockhold.domain.errors import NotFound, OrderNotOpen, StockConflict
from stockhold.domain.ids import Clock, now_ms
from stockhold.domain.intents import Cause, MoveOrder, MoveStock, Refused
from stockhold.domain.models import Order, OrderStatus
from stockhold.domain.rules import order_moves
from stockhold.observability import count, logger
from stockhold.usecases.ending import allowance_back
from stockhold.usecases.once import AGAIN, Again, settle


class OrderService:
    def __init__(self, orders: OrderRepository, unit: UnitOfWork, clock: Clock = now_ms) -> None:
        self._orders = orders
        self._unit = unit
        self._clock = clock

    def get(self, store_id: str, order_id: str) -> Order:
        order = self._orders.get(store_id, order_id)
        if order is None:
            raise NotFound(f"no order {order_id}")
        return order

    def fulfil(self, store_id: str, order_id: str) -> Order:
        """Shipped: the allocated units leave ``onHand``."""
        return self._finish(store_id, order_id, OrderStatus.FULFILLED)

    def cancel(self, store_id: str, order_id: str) -> Order:
        """Cancelled before shipping: the allocated units return to ``available``."""
        return self._finish(store_id, order_id, OrderStatus.CANCELLED)

    def _finish(self, store_id: str, order_id: str, to: OrderStatus) -> Order:
        """PLACED -> ``to`` once, by the order's own state: a re-run finds it ``to`` and answers it."""
        seen = [self.get(store_id, order_id)]

        def step() -> Order | Again:
            order = seen[0]
            if order.status is to:
                return order  # again: nothing more happens
            if order.status is not OrderStatus.PLACED:
                raise OrderNotOpen(order_id, order.status.value)
            now = self._clock()
            move = MoveOrder(order, to, now)
            cause = Cause(f"order_{to.value.lower()}", ref=order.order_id)
            try:
                returned = (
                    allowance_back(store_id, order.customer_id, order.lines, now) if to is OrderStatus.CANCELLED else []
                )
                stock = [MoveStock(store_id, m, now, cause) for m in order_moves(order.lines, to)]
                self._unit.commit([move, *stock, *returned])
            except Refused as refused:
                hit = refused.hit(move)
                current: Order | None = order if hit is None else hit.current
                if current is None:
                    raise NotFound(f"no order {order_id}") from None
                stock = [f.intent.move.sku for f in refused.of(MoveStock)]
                if stock and current.status is OrderStatus.PLACED:
                    logger.error("stock counters disagree with an order", order_id=order_id, skus=stock)
                    raise StockConflict("the stock counters disagree with this order", {"skus": stock}) from None
                seen[0] = current
                return AGAIN
            count(f"Orders{to.value.capitalize()}")
            return order.model_copy(update={"status": to, "updated_at": now})

        return settle(f"order {order_id}", step)
