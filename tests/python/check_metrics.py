"""Parses /metrics answers with prometheus_client's own parsers and prints what they saw.

Usage: check_metrics.py OPENMETRICS_FILE PROMETHEUS_FILE

The OpenMetrics text goes through prometheus_client.openmetrics.parser (strict: a bad
family, a wrong suffix, a missing # EOF or a clashing name is an exception), the
Prometheus text through prometheus_client.parser. Prints one JSON object:
{"openmetrics": {family: {"type", "help", "samples": {name: [[labels, value], ...]}}},
 "prometheus": {...}}. Exits non-zero when either text does not parse.
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus


def describe(families):
    seen = {}
    for family in families:
        samples = {}
        for sample in family.samples:
            samples.setdefault(sample.name, []).append([sample.labels, sample.value])
        seen[family.name] = {"type": family.type, "help": family.documentation, "samples": samples}
    return seen


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        openmetrics = describe(parse_openmetrics(f.read()))
    with open(sys.argv[2], encoding="utf-8") as f:
        prometheus = describe(parse_prometheus(f.read()))
    print(json.dumps({"openmetrics": openmetrics, "prometheus": prometheus}))


if __name__ == "__main__":
    main()
