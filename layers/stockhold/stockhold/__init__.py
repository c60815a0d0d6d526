"""stockhold: stock reservations for online stores.

The domain package shared by every Lambda function (shipped as a layer). It knows
stock, holds and tenancy; it has no AWS event shapes in it. ``store`` is the only
module that speaks DynamoDB.
"""

__version__ = "0.1.0"
