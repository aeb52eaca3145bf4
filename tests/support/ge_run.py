"""Run expectations in Great Expectations itself and print its results as JSON.

Run with the side environment's Python (.venv-ge, made by scripts/setup-ge), not with
DeltaFlow's: ``.venv-ge/bin/python tests/support/ge_run.py suites.json``. The file is a
list of suites, ``{"data": "table.parquet", "expectations": [{"type": "expect_...",
"kwargs": {...}}, ...]}``; each table is read with pandas and validated in an ephemeral
GE context. The output is one line of JSON: for each suite, for each expectation in
order, GE's success, unexpected_count, unexpected_percent, element_count, missing_count
and observed_value. An expectation GE cannot run is an error, never a result.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ["GX_ANALYTICS_ENABLED"] = "false"  # no usage statistics sent anywhere
os.environ["TQDM_DISABLE"] = "1"  # no progress bars on stderr


def validate(data_path: str, expectations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import great_expectations as gx
    import pandas as pd

    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("data").add_dataframe_asset("table")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": pd.read_parquet(data_path)}
    )
    results: list[dict[str, Any]] = []
    for item in expectations:
        expectation = gx.expectations.registry.get_expectation_impl(item["type"])
        validated = batch.validate(expectation(**item["kwargs"]))
        if validated.exception_info.get("raised_exception"):
            raise RuntimeError(f"{item}: {validated.exception_info['exception_message']}")
        result = validated.result
        results.append(
            {
                "success": validated.success,
                "unexpected_count": result.get("unexpected_count"),
                "unexpected_percent": result.get("unexpected_percent"),
                "element_count": result.get("element_count"),
                "missing_count": result.get("missing_count"),
                "observed_value": result.get("observed_value"),
            }
        )
    return results


def main(suites_path: str) -> None:
    import great_expectations as gx

    with open(suites_path, encoding="utf-8") as file:
        suites = json.load(file)
    out = {
        "version": gx.__version__,
        "results": [validate(s["data"], s["expectations"]) for s in suites],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
