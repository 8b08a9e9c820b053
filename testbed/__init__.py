"""The test bed: what the tests, the benchmarks and the demo stand on; never deployed.

Local stand-ins for the services consul-backup talks to (a Consul double and its
archive writer, moto's S3 in server mode, a private CA for TLS), the harness
that runs the stack program under Pulumi mocks, the stack file's secret
encryption, and the demo that puts them together. The stack program imports
nothing from here. Every server binds to 127.0.0.1 on a free port and stops
with its owner.
"""
