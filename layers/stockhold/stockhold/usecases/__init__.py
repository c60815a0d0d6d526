"""The use-case room: one module per capability (stock, reserving, holds, expiry,
checkout, orders, reconcile, tenancy). Each composes one unit of work from typed intents
(``stockhold.domain.intents``), commits it through the data room's ``UnitOfWork`` and reads
the named failures it gets back. No DynamoDB shapes, keys or expressions here."""
