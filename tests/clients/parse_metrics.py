"""Parses a gavel /metrics answer with the official Prometheus Python client
(PyPI prometheus-client): its Prometheus text format 0.0.4 parser, or its
OpenMetrics parser with --openmetrics. Prints one JSON object per sample
({"name", "labels", "value", "type"}), one per line; exits non-zero when the
parser rejects the text.

Usage: parse_metrics.py [--openmetrics] < scrape-body
"""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families as text_families


def main() -> None:
    text = sys.stdin.read()
    parse = om_families if "--openmetrics" in sys.argv else text_families
    for family in parse(text):
        for sample in family.samples:
            print(json.dumps({"name": sample.name, "labels": sample.labels,
                              "value": sample.value, "type": family.type}))


if __name__ == "__main__":
    main()
