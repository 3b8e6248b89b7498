"""Parse OpenMetrics text from stdin with the Prometheus Python client's
parser (a real consumer of the format); print every sample as
`name{k="v",...} value`, sorted. Exits non-zero if the text does not parse."""

import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

lines = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        lines.append(f"{sample.name}{{{labels}}} {sample.value}")
print("\n".join(sorted(lines)))
