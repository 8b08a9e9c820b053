"""Consul snapshot backup: client, archive verifier, S3 streaming upload, run wiring.

Only the standard library, boto3/botocore and botocore's urllib3 are used, so the
Lambda Python runtime runs this code as it is, with no build step.
"""
