"""API Gateway TOKEN authorizer: ``Authorization: Bearer <key>`` -> store and role.

The key is looked up by its SHA-256 hash. Unknown or missing keys raise
"Unauthorized", which API Gateway answers as 401 (shaped by the template's
GatewayResponses). The policy allows the whole API, so API Gateway may cache it per
key; which routes a role may call is decided by the API function (403).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerTokenEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from stockhold.observability import logger
from stockhold.wiring import services


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@logger.inject_lambda_context
@event_source(data_class=APIGatewayAuthorizerTokenEvent)
def lambda_handler(event: APIGatewayAuthorizerTokenEvent, context: LambdaContext) -> dict[str, Any]:
    token = bearer_token(event.authorization_token)
    principal = services().tenancy.authenticate(token) if token else None
    if principal is None:
        logger.info("rejected API key", reason="missing" if token is None else "unknown")
        raise Exception("Unauthorized")  # API Gateway's contract for a 401
    arn = event.parsed_arn
    policy = APIGatewayAuthorizerResponse(
        principal_id=f"{principal.store_id}:{principal.role.value}",
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context={"storeId": principal.store_id, "role": principal.role.value, "keyId": principal.key_id or ""},
    )
    policy.allow_all_routes()
    return policy.asdict()
