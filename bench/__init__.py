"""Benchmarks of stockhold against DynamoDB Local (``make bench`` = ``python -m bench.run``)."""
