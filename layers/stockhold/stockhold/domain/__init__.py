"""The domain room: stock, holds, checkouts and orders as values, and the pure rules over
them (which moves a transition makes, the deadline rules, what a checkout does when its
hold ends). No boto3, no DynamoDB shapes: everything here is testable without AWS."""
