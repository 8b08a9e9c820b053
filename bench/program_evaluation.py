"""Stack program evaluation time under Pulumi mocks (a script, not a test).

For 1, 10 and 100 clusters, prints the time to run the whole program (config
validation, every component and resource) against the time to construct the
same number of bare resources under the same mocks, as a ratio (target: at most
1.3x, and linear in the number of clusters). Then builds the function archive
twice, with a __pycache__ left behind in between, and shows both hash the same.

Usage: python -m bench.program_evaluation [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

import pulumi
import pulumi_aws as aws

from components.function_code import FUNCTION_ROOT, function_code_sha256
from testbed.pulumi_mocks import ACCOUNT, REGION, RecordingMocks, config_values


def stack_config(clusters: int) -> dict[str, Any]:
    return {
        "clusters": [
            {
                "name": f"cluster-{n}",
                "consulAddress": f"https://consul-{n}.internal:8501",
                "tokenSecretArn": (
                    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:consul-{n}-AbCdEf"
                ),
                "vpc": {
                    "subnetIds": ["subnet-0123456789abcdef0"],
                    "securityGroupIds": ["sg-0123456789abcdef0"],
                },
            }
            for n in range(clusters)
        ]
    }


def _fresh_mocks() -> RecordingMocks:
    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = RecordingMocks(preview=False)
    pulumi.runtime.set_mocks(mocks, project="consul-backup", stack="bench", preview=False)
    return mocks


def time_program(clusters: int) -> tuple[float, int]:
    from components.program import run

    mocks = _fresh_mocks()
    pulumi.runtime.set_all_config(config_values(stack_config(clusters)), [])

    @pulumi.runtime.test
    def program() -> Any:
        _, exports = run()
        return pulumi.Output.from_input(exports)

    started = time.perf_counter()
    program()
    return time.perf_counter() - started, len(mocks.resources)


def time_bare(count: int) -> float:
    _fresh_mocks()

    @pulumi.runtime.test
    def bare() -> Any:
        topics = [aws.sns.Topic(f"bare-{n}") for n in range(count)]
        return pulumi.Output.all(*[t.arn for t in topics])

    started = time.perf_counter()
    bare()
    return time.perf_counter() - started


def archive_hash_after_pycache() -> tuple[str, str]:
    first = function_code_sha256()
    # What a test run leaves behind must not reach the archive.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(FUNCTION_ROOT)], check=True)
    assert any(FUNCTION_ROOT.rglob("__pycache__")), "compileall left no __pycache__"
    return first, function_code_sha256()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"median of {args.repeat} runs each, after one warm-up run of each")
    time_bare(time_program(1)[1])  # imports and first-use costs are not the program's
    per_cluster, per_bare = [], []
    for clusters in (1, 10, 100):
        programs, bares, resources = [], [], 0
        for _ in range(args.repeat):
            seconds, resources = time_program(clusters)
            programs.append(seconds)
            bares.append(time_bare(resources))
        program_s, bare_s = statistics.median(programs), statistics.median(bares)
        per_cluster.append(program_s / clusters)
        per_bare.append(bare_s / clusters)
        print(
            f"{clusters:>4} clusters, {resources:>5} resources: program {program_s:.3f} s, "
            f"bare resources {bare_s:.3f} s, ratio {program_s / bare_s:.2f}x, "
            f"{1000 * program_s / clusters:.1f} ms per cluster"
        )
    program_growth = per_cluster[-1] / per_cluster[0]
    bare_growth = per_bare[-1] / per_bare[0]
    print(
        f"cost per cluster, 100 clusters against 1: program {program_growth:.2f}x, "
        f"bare resources {bare_growth:.2f}x (the mock engine's own growth)"
    )
    first, second = archive_hash_after_pycache()
    verdict = "same" if first == second else "DIFFERENT"
    print(f"function archive sha256: {first[:16]}… then {second[:16]}… ({verdict})")


if __name__ == "__main__":
    main()
