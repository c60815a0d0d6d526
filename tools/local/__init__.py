"""The local stack: the whole application on DynamoDB Local, wired from template.yaml.

Dev tooling, not a second product: API Gateway (routes, authorizer, gateway
responses), Lambda (a pool of worker processes per function, each with the
environment the template gives it), stream event sources and schedules. See
docs/local-stack.md.
"""
