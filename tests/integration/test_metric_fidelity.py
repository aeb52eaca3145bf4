"""Metric SQL gives BigQuery's answers on DuckDB and PostgreSQL, or is refused.

Each case is a BigQuery expression (or query) with the result BigQuery's documentation
gives for it, and its type. It goes through the metrics engine's own path (``Run``:
its transpile step, then its warehouse's query) on DuckDB and on PostgreSQL, and must
either give that result or be refused, with a message naming the function, the engine
and what to use instead, by the transpile step and by ``metrics validate``.

Results are compared as the metrics engine writes them: numbers through ``exact`` (38
digits, 9 after the point), so a FLOAT64 equals its documented value to 9 places; an
INT64 must come back as an integer. ``ROWS`` cases compare the first column of every
row; ``ERROR`` cases must fail on the engine as they fail on BigQuery (no number).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from deltaflow.config.connections import DuckDBConnection, PostgresConnection
from deltaflow.connectors.protocol import RunResources
from deltaflow.metrics import definitions
from deltaflow.metrics.dialect import ENGINES, refusals
from deltaflow.metrics.dialect import RefusedFunctionError as Refused
from deltaflow.metrics.engine import Run, exact, run_metrics
from deltaflow.metrics.refused import REFUSED

ERROR = "ERROR"  # BigQuery raises an error: the engine must not return a value
UTC = dt.UTC


class Case(NamedTuple):
    sql: str  # an expression, or a whole query when it starts with SELECT
    expected: Any  # BigQuery's documented result (None: NULL)
    type: str  # INT64, FLOAT64, NUMERIC, STRING, BOOL, DATE, DATETIME, TIMESTAMP, ARRAY, ROWS
    refused: tuple[str, ...] = ()  # the engines that refuse it


def D(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def DT(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def TS(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


BOTH = ("duckdb", "postgres")
PG = ("postgres",)
DUCK = ("duckdb",)

CASES = [
    # Date parts: https://cloud.google.com/bigquery/docs/reference/standard-sql/date_functions#extract
    # DAYOFWEEK is 1 (Sunday) to 7; WEEK counts Sunday-based weeks, days before the
    # year's first Sunday in week 0; WEEK(<WEEKDAY>) likewise from that weekday.
    Case("EXTRACT(DAY FROM DATE '2013-12-25')", 25, "INT64"),
    Case("EXTRACT(DAYOFWEEK FROM DATE '2013-12-25')", 4, "INT64"),
    Case("EXTRACT(DAYOFWEEK FROM DATE '2017-01-01')", 1, "INT64"),
    Case("EXTRACT(DAYOFWEEK FROM DATE '2016-12-31')", 7, "INT64"),
    Case("EXTRACT(DAYOFYEAR FROM DATE '2016-12-31')", 366, "INT64"),
    Case("EXTRACT(DAYOFYEAR FROM DATE '2008-12-25')", 360, "INT64"),
    Case("EXTRACT(WEEK FROM DATE '2016-01-01')", 0, "INT64"),
    Case("EXTRACT(WEEK FROM DATE '2016-01-03')", 1, "INT64"),
    Case("EXTRACT(WEEK FROM DATE '2017-11-05')", 45, "INT64"),
    Case("EXTRACT(WEEK FROM DATE '2013-12-25')", 51, "INT64"),
    Case("EXTRACT(WEEK(MONDAY) FROM DATE '2017-11-05')", 44, "INT64"),
    Case("EXTRACT(WEEK(MONDAY) FROM DATE '2016-01-03')", 0, "INT64"),
    Case("EXTRACT(ISOWEEK FROM DATE '2016-01-01')", 53, "INT64"),
    Case("EXTRACT(ISOWEEK FROM DATE '2019-12-30')", 1, "INT64"),
    Case("EXTRACT(ISOYEAR FROM DATE '2016-01-01')", 2015, "INT64"),
    Case("EXTRACT(ISOYEAR FROM DATE '2019-12-30')", 2020, "INT64"),
    Case("EXTRACT(MONTH FROM DATE '2013-12-25')", 12, "INT64"),
    Case("EXTRACT(QUARTER FROM DATE '2013-08-25')", 3, "INT64"),
    Case("EXTRACT(YEAR FROM DATE '2013-12-25')", 2013, "INT64"),
    # Timestamp and datetime parts (UTC unless a zone is named):
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/timestamp_functions#extract
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/datetime_functions#extract
    Case("EXTRACT(HOUR FROM TIMESTAMP '2008-12-25 05:30:00+00')", 5, "INT64"),
    Case("EXTRACT(MINUTE FROM TIMESTAMP '2008-12-25 05:30:00+00')", 30, "INT64"),
    Case("EXTRACT(SECOND FROM TIMESTAMP '2008-12-25 05:30:12.345+00')", 12, "INT64"),
    Case("EXTRACT(MILLISECOND FROM TIMESTAMP '2008-12-25 05:30:12.345+00')", 345, "INT64"),
    Case("EXTRACT(MICROSECOND FROM TIMESTAMP '2008-12-25 05:30:12.345678+00')", 345678, "INT64"),
    Case("EXTRACT(DAYOFWEEK FROM TIMESTAMP '2008-12-25 05:30:00+00')", 5, "INT64"),
    Case("EXTRACT(DATE FROM TIMESTAMP '2008-12-25 05:30:00+00')", D("2008-12-25"), "DATE"),
    Case("EXTRACT(HOUR FROM DATETIME '2008-12-25 15:30:00')", 15, "INT64"),
    Case("EXTRACT(DAYOFWEEK FROM DATETIME '2008-12-28 15:30:00')", 1, "INT64"),
    Case("EXTRACT(WEEK FROM DATETIME '2017-11-05 00:00:00')", 45, "INT64"),
    # Date arithmetic: https://cloud.google.com/bigquery/docs/reference/standard-sql/date_functions
    # (DATE_ADD, DATE_SUB: a month past the end of the shorter month ends on its last
    # day; DATE_DIFF counts part boundaries; WEEK boundaries are Sundays)
    Case("DATE_ADD(DATE '2008-12-25', INTERVAL 5 DAY)", D("2008-12-30"), "DATE"),
    Case("DATE_SUB(DATE '2008-12-25', INTERVAL 5 DAY)", D("2008-12-20"), "DATE"),
    Case("DATE_ADD(DATE '2008-12-25', INTERVAL 2 WEEK)", D("2009-01-08"), "DATE"),
    Case("DATE_ADD(DATE '2024-01-31', INTERVAL 1 MONTH)", D("2024-02-29"), "DATE"),
    Case("DATE_ADD(DATE '2024-02-29', INTERVAL 1 YEAR)", D("2025-02-28"), "DATE"),
    Case("DATE_ADD(DATE '2008-12-25', INTERVAL 1 QUARTER)", D("2009-03-25"), "DATE"),
    Case("DATE_SUB(DATE '2024-03-31', INTERVAL 1 MONTH)", D("2024-02-29"), "DATE"),
    Case("DATE_DIFF(DATE '2010-07-07', DATE '2008-12-25', DAY)", 559, "INT64"),
    Case("DATE_DIFF(DATE '2008-12-25', DATE '2010-07-07', DAY)", -559, "INT64"),
    Case("DATE_DIFF(DATE '2017-10-15', DATE '2017-10-14', DAY)", 1, "INT64"),
    Case("DATE_DIFF(DATE '2017-10-15', DATE '2017-10-14', WEEK)", 1, "INT64"),
    Case("DATE_DIFF(DATE '2017-12-18', DATE '2017-12-17', WEEK)", 0, "INT64"),
    Case("DATE_DIFF(DATE '2017-12-18', DATE '2017-12-17', WEEK(MONDAY))", 1, "INT64"),
    Case("DATE_DIFF(DATE '2017-12-18', DATE '2017-12-17', ISOWEEK)", 1, "INT64"),
    Case("DATE_DIFF(DATE '2017-12-30', DATE '2014-12-30', YEAR)", 3, "INT64"),
    Case("DATE_DIFF(DATE '2017-12-30', DATE '2014-12-30', ISOYEAR)", 2, "INT64"),
    Case("DATE_DIFF(DATE '2024-03-01', DATE '2024-02-29', MONTH)", 1, "INT64"),
    Case("DATE_DIFF(DATE '2024-04-01', DATE '2023-12-31', QUARTER)", 2, "INT64"),
    Case("DATE_TRUNC(DATE '2008-12-25', MONTH)", D("2008-12-01"), "DATE"),
    Case("DATE_TRUNC(DATE '2008-12-25', YEAR)", D("2008-01-01"), "DATE"),
    Case("DATE_TRUNC(DATE '2008-11-25', QUARTER)", D("2008-10-01"), "DATE"),
    Case("DATE_TRUNC(DATE '2017-11-05', WEEK)", D("2017-11-05"), "DATE"),
    Case("DATE_TRUNC(DATE '2017-11-08', WEEK)", D("2017-11-05"), "DATE"),
    Case("DATE_TRUNC(DATE '2017-11-05', WEEK(MONDAY))", D("2017-10-30"), "DATE"),
    Case("DATE_TRUNC(DATE '2017-11-05', ISOWEEK)", D("2017-10-30"), "DATE"),
    Case("DATE_TRUNC(DATE '2015-06-15', ISOYEAR)", D("2014-12-29"), "DATE"),
    Case("LAST_DAY(DATE '2008-11-25', MONTH)", D("2008-11-30"), "DATE"),
    Case("LAST_DAY(DATE '2008-11-25')", D("2008-11-30"), "DATE"),
    Case("LAST_DAY(DATE '2008-11-25', YEAR)", D("2008-12-31"), "DATE", PG),
    Case("LAST_DAY(DATE '2008-11-10', WEEK(MONDAY))", D("2008-11-16"), "DATE"),
    Case("LAST_DAY(DATE '2008-11-10', WEEK)", D("2008-11-15"), "DATE"),
    Case("DATE(2016, 12, 25)", D("2016-12-25"), "DATE"),
    Case("DATE(DATETIME '2016-12-25 23:59:59')", D("2016-12-25"), "DATE"),
    Case(
        "DATE(TIMESTAMP '2016-12-25 05:30:00+07', 'America/Los_Angeles')",
        D("2016-12-24"),
        "DATE",
        PG,
    ),
    Case("UNIX_DATE(DATE '2008-12-25')", 14238, "INT64"),
    Case("DATE_FROM_UNIX_DATE(14238)", D("2008-12-25"), "DATE"),
    # Timestamp and datetime arithmetic; TIMESTAMP_DIFF counts whole intervals:
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/timestamp_functions
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/datetime_functions
    Case(
        "TIMESTAMP_DIFF(TIMESTAMP '2010-07-07 10:20:00+00', TIMESTAMP '2008-12-25 15:30:00+00', "
        "HOUR)",
        13410,
        "INT64",
    ),
    Case("TIMESTAMP_DIFF(TIMESTAMP '2018-08-14', TIMESTAMP '2018-10-14', DAY)", -61, "INT64"),
    Case(
        "TIMESTAMP_DIFF(TIMESTAMP '2001-02-01 01:00:00', TIMESTAMP '2001-02-01 00:00:01', HOUR)",
        0,
        "INT64",
    ),
    Case(
        "TIMESTAMP_DIFF(TIMESTAMP '2008-12-25 15:30:00+00', TIMESTAMP '2008-12-25 15:29:00+00', "
        "SECOND)",
        60,
        "INT64",
    ),
    Case(
        "TIMESTAMP_ADD(TIMESTAMP '2008-12-25 15:30:00+00', INTERVAL 10 MINUTE)",
        TS("2008-12-25 15:40:00"),
        "TIMESTAMP",
    ),
    Case(
        "TIMESTAMP_SUB(TIMESTAMP '2008-12-25 15:30:00+00', INTERVAL 10 MINUTE)",
        TS("2008-12-25 15:20:00"),
        "TIMESTAMP",
    ),
    Case(
        "TIMESTAMP_TRUNC(TIMESTAMP '2008-12-25 15:30:00+00', DAY)",
        TS("2008-12-25 00:00:00"),
        "TIMESTAMP",
    ),
    Case(
        "TIMESTAMP_TRUNC(TIMESTAMP '2008-12-25 15:30:00+00', HOUR)",
        TS("2008-12-25 15:00:00"),
        "TIMESTAMP",
    ),
    Case("TIMESTAMP_SECONDS(1230219000)", TS("2008-12-25 15:30:00"), "TIMESTAMP"),
    Case("TIMESTAMP_MILLIS(1230219000000)", TS("2008-12-25 15:30:00"), "TIMESTAMP"),
    Case("TIMESTAMP_MICROS(1230219000000000)", TS("2008-12-25 15:30:00"), "TIMESTAMP"),
    Case("UNIX_SECONDS(TIMESTAMP '2008-12-25 15:30:00+00')", 1230219000, "INT64"),
    Case("UNIX_MILLIS(TIMESTAMP '2008-12-25 15:30:00+00')", 1230219000000, "INT64"),
    Case("UNIX_MICROS(TIMESTAMP '2008-12-25 15:30:00+00')", 1230219000000000, "INT64"),
    Case(
        "DATETIME_DIFF(DATETIME '2010-07-07 10:20:00', DATETIME '2008-12-25 15:30:00', DAY)",
        559,
        "INT64",
        PG,
    ),
    Case(
        "DATETIME_DIFF(DATETIME '2017-10-15 00:00:00', DATETIME '2017-10-14 00:00:00', WEEK)",
        1,
        "INT64",
        PG,
    ),
    Case(
        "DATETIME_ADD(DATETIME '2008-12-25 15:30:00', INTERVAL 10 MINUTE)",
        DT("2008-12-25 15:40:00"),
        "DATETIME",
    ),
    Case(
        "DATETIME_TRUNC(DATETIME '2008-12-25 15:30:00', DAY)", DT("2008-12-25 00:00:00"), "DATETIME"
    ),
    Case("DATETIME(2008, 12, 25, 5, 30, 0)", DT("2008-12-25 05:30:00"), "DATETIME"),
    Case(
        "DATETIME_TRUNC(DATETIME '2017-11-08 15:30:00', WEEK)",
        DT("2017-11-05 00:00:00"),
        "DATETIME",
        PG,
    ),
    Case(
        "TIMESTAMP_DIFF(TIMESTAMP '2008-12-25 15:30:00.5+00', TIMESTAMP '2008-12-25 15:30:00+00', "
        "MILLISECOND)",
        500,
        "INT64",
        BOTH,
    ),
    # Formatting and parsing: format elements are strftime's, plus %Q (quarter):
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/format-elements
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/date_functions#format_date
    Case("FORMAT_DATE('%x', DATE '2008-12-25')", "12/25/08", "STRING"),
    Case("FORMAT_DATE('%b-%d-%Y', DATE '2008-12-25')", "Dec-25-2008", "STRING"),
    Case("FORMAT_DATE('%b %Y', DATE '2008-12-25')", "Dec 2008", "STRING"),
    Case("FORMAT_DATE('%Y%m%d', DATE '2008-12-25')", "20081225", "STRING"),
    Case("FORMAT_DATE('%F', DATE '2008-12-25')", "2008-12-25", "STRING"),
    Case("FORMAT_DATE('%A', DATE '2008-12-25')", "Thursday", "STRING"),
    Case("FORMAT_DATE('%B', DATE '2008-12-25')", "December", "STRING"),
    Case("FORMAT_DATE('%j', DATE '2008-12-25')", "360", "STRING"),
    Case("FORMAT_DATE('%u', DATE '2008-12-28')", "7", "STRING", PG),
    Case("FORMAT_DATE('%w', DATE '2008-12-28')", "0", "STRING", PG),
    Case("FORMAT_DATE('%U', DATE '2008-12-25')", "51", "STRING", PG),
    Case("FORMAT_DATE('%Q', DATE '2008-12-25')", "4", "STRING", BOTH),
    Case(
        "FORMAT_TIMESTAMP('%c', TIMESTAMP '2050-12-25 15:30:55+00', 'UTC')",
        "Sun Dec 25 15:30:55 2050",
        "STRING",
        PG,
    ),
    Case(
        "FORMAT_TIMESTAMP('%b-%d-%Y', TIMESTAMP '2050-12-25 15:30:55+00')", "Dec-25-2050", "STRING"
    ),
    Case(
        "FORMAT_TIMESTAMP('%Y-%m-%dT%H:%M:%SZ', TIMESTAMP '2050-12-25 15:30:55', 'UTC')",
        "2050-12-25T15:30:55Z",
        "STRING",
        PG,
    ),
    Case(
        "FORMAT_DATETIME('%c', DATETIME '2008-12-25 15:30:00')",
        "Thu Dec 25 15:30:00 2008",
        "STRING",
        PG,
    ),
    Case("FORMAT_DATETIME('%b-%d-%Y', DATETIME '2008-12-25 15:30:00')", "Dec-25-2008", "STRING"),
    Case("PARSE_DATE('%x', '12/25/08')", D("2008-12-25"), "DATE"),
    Case("PARSE_DATE('%Y%m%d', '20081225')", D("2008-12-25"), "DATE"),
    Case("PARSE_DATE('%F', '2000-12-30')", D("2000-12-30"), "DATE"),
    Case(
        "PARSE_DATETIME('%Y-%m-%d %H:%M:%S', '1998-10-18 13:45:55')",
        DT("1998-10-18 13:45:55"),
        "DATETIME",
        PG,
    ),
    Case(
        "PARSE_TIMESTAMP('%c', 'Thu Dec 25 07:30:00 2008')",
        TS("2008-12-25 07:30:00"),
        "TIMESTAMP",
        PG,
    ),
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/string_functions#format_string
    Case("FORMAT('%d', 10)", "10", "STRING", PG),
    Case("FORMAT('|%10d|', 11)", "|        11|", "STRING", PG),
    Case("FORMAT('+%010d+', 12)", "+0000000012+", "STRING", PG),
    Case("FORMAT('-%s-', 'abc')", "-abc-", "STRING", PG),
    Case("FORMAT('%.2f', 3.14159)", "3.14", "STRING", PG),
    # String functions: https://cloud.google.com/bigquery/docs/reference/standard-sql/string_functions
    # (SUBSTR: a negative position counts from the end; 0 or one before the start is 1;
    # CONCAT is NULL when any argument is)
    Case("CONCAT('T.P.', ' ', 'Bar')", "T.P. Bar", "STRING"),
    Case("CONCAT('Summer', ' ', CAST(1923 AS STRING))", "Summer 1923", "STRING"),
    Case("CONCAT('a', NULL)", None, "STRING"),
    Case("'a' || 'b' || 'c'", "abc", "STRING"),
    Case("'a' || NULL", None, "STRING"),
    Case("LENGTH('абвгд')", 5, "INT64"),
    Case("CHAR_LENGTH('абвгд')", 5, "INT64"),
    Case("BYTE_LENGTH('абвгд')", 10, "INT64"),
    Case("SUBSTR('apple', 2)", "pple", "STRING"),
    Case("SUBSTR('apple', 2, 2)", "pp", "STRING"),
    Case("SUBSTR('apple', -2)", "le", "STRING"),
    Case("SUBSTR('apple', -4, 2)", "pp", "STRING"),
    Case("SUBSTR('apple', 1, 123)", "apple", "STRING"),
    Case("SUBSTR('apple', 123)", "", "STRING"),
    Case("SUBSTR('apple', 0, 2)", "ap", "STRING"),
    Case("SUBSTR('apple', -123, 2)", "ap", "STRING"),
    Case("SUBSTRING('apple', 3)", "ple", "STRING"),
    Case("LEFT('apple', 3)", "app", "STRING"),
    Case("RIGHT('apple', 3)", "ple", "STRING"),
    Case("UPPER('foo')", "FOO", "STRING"),
    Case("LOWER('FOO BAR')", "foo bar", "STRING"),
    Case("INITCAP('Hello World-everyone!')", "Hello World-Everyone!", "STRING"),
    Case("TRIM('   apple   ')", "apple", "STRING"),
    Case("TRIM('***apple***', '*')", "apple", "STRING"),
    Case("TRIM('xzxapplexxy', 'xyz')", "apple", "STRING"),
    Case("LTRIM('   apple   ')", "apple   ", "STRING"),
    Case("RTRIM('***apple***', '*')", "***apple", "STRING"),
    Case("LPAD('c', 5)", "    c", "STRING"),
    Case("LPAD('abc', 8, 'def')", "defdeabc", "STRING"),
    Case("LPAD('abc', 2)", "ab", "STRING"),
    Case("RPAD('abc', 8, 'def')", "abcdefde", "STRING"),
    Case("RPAD('abc', 2, 'x')", "ab", "STRING"),
    Case("REPLACE('apple pie', 'pie', 'cobbler')", "apple cobbler", "STRING"),
    Case("REPLACE('a-b-c', '-', '')", "abc", "STRING"),
    Case("REPEAT('abc', 3)", "abcabcabc", "STRING"),
    Case("REPEAT('abc', 0)", "", "STRING"),
    Case("REVERSE('abc')", "cba", "STRING"),
    Case("STRPOS('foo@example.com', '@')", 4, "INT64"),
    Case("STRPOS('foobar', 'z')", 0, "INT64"),
    Case("INSTR('banana', 'an', 1, 2)", 4, "INT64", BOTH),
    Case("STARTS_WITH('foo', 'b')", False, "BOOL"),
    Case("ENDS_WITH('apple', 'e')", True, "BOOL"),
    Case("ASCII('abcd')", 97, "INT64"),
    Case("ASCII('')", 0, "INT64"),
    Case("CHR(65)", "A", "STRING"),
    Case("TRANSLATE('This is a cookie', 'sco', 'zku')", "Thiz iz a kuukie", "STRING"),
    Case("CONTAINS_SUBSTR('the blue house', 'Blue')", True, "BOOL"),
    Case("SPLIT('a,b,c', ',')", ["a", "b", "c"], "ARRAY"),
    Case("SPLIT('a,b,c', ',')[OFFSET(1)]", "b", "STRING", BOTH),
    Case("ARRAY_LENGTH(SPLIT('', ','))", 1, "INT64"),
    Case("SOUNDEX('Ashcraft')", "A261", "STRING", BOTH),
    # Regular expressions (RE2; REGEXP_REPLACE replaces every match):
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/string_functions#regexp_replace
    Case(
        r"REGEXP_CONTAINS('foo@example.com', r'@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+')", True, "BOOL", PG
    ),
    Case(
        r"REGEXP_CONTAINS('www.example.net', r'@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+')", False, "BOOL", PG
    ),
    Case("REGEXP_EXTRACT('foo@example.com', r'^[a-zA-Z0-9_.+-]+')", "foo", "STRING", PG),
    Case("REGEXP_EXTRACT('foo@example.com', r'^([a-zA-Z0-9_.+-]+)@')", "foo", "STRING", PG),
    Case("REGEXP_EXTRACT('Hello World', r'x')", None, "STRING", PG),
    Case(
        "REGEXP_EXTRACT_ALL('Try `func(x)` or `func(y)`', '`(.+?)`')",
        ["func(x)", "func(y)"],
        "ARRAY",
        PG,
    ),
    Case("REGEXP_REPLACE('a-b-c', '-', '+')", "a+b+c", "STRING", PG),
    Case(
        r"REGEXP_REPLACE('# Heading', r'^# ([a-zA-Z0-9\s]+$)', '<h1>\\1</h1>')",
        "<h1>Heading</h1>",
        "STRING",
        PG,
    ),
    # Casts and SAFE_ variants: a FLOAT64 cast to INT64 rounds half away from zero;
    # SAFE_CAST gives NULL where CAST fails:
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/conversion_functions
    Case("CAST('123' AS INT64)", 123, "INT64"),
    Case("CAST(' 123 ' AS INT64)", 123, "INT64"),
    Case("CAST(CAST(1.5 AS FLOAT64) AS INT64)", 2, "INT64"),
    Case("CAST(CAST(2.5 AS FLOAT64) AS INT64)", 3, "INT64"),
    Case("CAST(CAST(-2.5 AS FLOAT64) AS INT64)", -3, "INT64"),
    Case("CAST(NUMERIC '2.5' AS INT64)", 3, "INT64"),
    Case("CAST(NUMERIC '-1.5' AS INT64)", -2, "INT64"),
    Case("CAST(123 AS STRING)", "123", "STRING"),
    Case("CAST(TRUE AS STRING)", "true", "STRING"),
    Case("CAST(DATE '2008-12-25' AS STRING)", "2008-12-25", "STRING"),
    Case("CAST('true' AS BOOL)", True, "BOOL"),
    Case("CAST(0 AS BOOL)", False, "BOOL"),
    Case("CAST('2008-12-25' AS DATE)", D("2008-12-25"), "DATE"),
    Case("CAST('1.25' AS NUMERIC)", Decimal("1.25"), "NUMERIC"),
    Case("CAST('3.5' AS FLOAT64)", 3.5, "FLOAT64"),
    Case("CAST(7 AS FLOAT64)", 7.0, "FLOAT64"),
    Case("CAST('abc' AS INT64)", ERROR, "INT64"),
    Case("SAFE_CAST('abc' AS INT64)", None, "INT64", PG),
    Case("SAFE_CAST('123' AS INT64)", 123, "INT64", PG),
    Case("SAFE_CAST('2008-13-45' AS DATE)", None, "DATE", PG),
    Case("SAFE_CAST('x' AS NUMERIC)", None, "NUMERIC", PG),
    Case("SAFE_CAST('3.5' AS FLOAT64)", 3.5, "FLOAT64", PG),
    Case("SAFE_CAST('9223372036854775808' AS INT64)", None, "INT64", PG),
    Case("SAFE_DIVIDE(10, 4)", 2.5, "FLOAT64"),
    Case("SAFE_DIVIDE(10, 0)", None, "FLOAT64"),
    Case("SAFE_DIVIDE(0, 0)", None, "FLOAT64"),
    Case("SAFE_MULTIPLY(20, 4)", 80, "INT64", PG),
    Case("SAFE_ADD(5, 4)", 9, "INT64", PG),
    Case("SAFE_SUBTRACT(5, 4)", 1, "INT64", PG),
    Case("SAFE_NEGATE(1)", -1, "INT64", PG),
    Case("SAFE_ADD(9223372036854775807, 1)", None, "INT64", PG),
    Case("SAFE_MULTIPLY(9223372036854775807, 2)", None, "INT64", PG),
    Case("SAFE.SUBSTR('foo', 0, -2)", None, "STRING", BOTH),
    # Math and rounding: ROUND rounds half away from zero; LOG(X, Y) is log base Y:
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/mathematical_functions
    Case("ABS(-25)", 25, "INT64"),
    Case("SIGN(-25)", -1, "INT64"),
    Case("SIGN(0)", 0, "INT64"),
    Case("MOD(25, 12)", 1, "INT64"),
    Case("MOD(-25, 12)", -1, "INT64"),
    Case("MOD(25, -12)", 1, "INT64"),
    Case("ROUND(2.5)", 3.0, "FLOAT64"),
    Case("ROUND(-2.5)", -3.0, "FLOAT64"),
    Case("ROUND(CAST(2.5 AS FLOAT64))", 3.0, "FLOAT64"),
    Case("ROUND(CAST(-0.5 AS FLOAT64))", -1.0, "FLOAT64"),
    Case("ROUND(123.7, -1)", 120.0, "FLOAT64"),
    Case("ROUND(1.235, 2)", 1.24, "FLOAT64"),
    Case("ROUND(NUMERIC '2.25', 1)", Decimal("2.3"), "NUMERIC"),
    Case("ROUND(NUMERIC '2.25', 1, 'ROUND_HALF_EVEN')", Decimal("2.2"), "NUMERIC", PG),
    Case("TRUNC(2.8)", 2.0, "FLOAT64"),
    Case("TRUNC(-2.8)", -2.0, "FLOAT64"),
    Case("TRUNC(1.2345, 2)", 1.23, "FLOAT64"),
    Case("CEIL(2.1)", 3.0, "FLOAT64"),
    Case("CEIL(-2.1)", -2.0, "FLOAT64"),
    Case("CEILING(2.1)", 3.0, "FLOAT64"),
    Case("FLOOR(2.9)", 2.0, "FLOAT64"),
    Case("FLOOR(-2.1)", -3.0, "FLOAT64"),
    Case("SQRT(25)", 5.0, "FLOAT64"),
    Case("POW(2, 3)", 8.0, "FLOAT64"),
    Case("POWER(2, -1)", 0.5, "FLOAT64"),
    Case("EXP(0)", 1.0, "FLOAT64"),
    Case("LN(1)", 0.0, "FLOAT64"),
    Case("LOG(100, 10)", 2.0, "FLOAT64"),
    Case("LOG(8, 2)", 3.0, "FLOAT64"),
    Case("LOG10(100)", 2.0, "FLOAT64"),
    Case("CBRT(27)", 3.0, "FLOAT64"),
    Case("COS(0)", 1.0, "FLOAT64"),
    Case("ATAN2(0, 1)", 0.0, "FLOAT64"),
    Case("IS_NAN(CAST('NaN' AS FLOAT64))", True, "BOOL"),
    Case("IS_INF(CAST('inf' AS FLOAT64))", True, "BOOL"),
    Case("IS_INF(CAST(1 AS FLOAT64))", False, "BOOL"),
    Case("GREATEST(1, 2, 3)", 3, "INT64"),
    Case("GREATEST(1, NULL)", None, "INT64"),
    Case("LEAST(3, 1, 2)", 1, "INT64"),
    Case("LEAST(1, NULL)", None, "INT64"),
    Case("GREATEST('apple', 'banana')", "banana", "STRING"),
    Case("RANGE_BUCKET(20, [0, 10, 20, 30, 40])", 3, "INT64", BOTH),
    Case("IEEE_DIVIDE(20, 4)", 5.0, "FLOAT64", PG),
    # Integer division and overflow: / is FLOAT64 division; DIV rounds toward zero;
    # INT64 arithmetic that overflows is an error:
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/operators#arithmetic_operators
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/mathematical_functions#div
    Case("7 / 2", 3.5, "FLOAT64"),
    Case("-7 / 2", -3.5, "FLOAT64"),
    Case("6 / 3", 2.0, "FLOAT64"),
    Case("1 / 3", 1 / 3, "FLOAT64"),
    Case("DIV(20, 4)", 5, "INT64"),
    Case("DIV(12, -7)", -1, "INT64"),
    Case("DIV(-7, 2)", -3, "INT64"),
    Case("DIV(20, 3)", 6, "INT64"),
    Case("7 / 0", ERROR, "FLOAT64"),
    Case("DIV(7, 0)", ERROR, "INT64"),
    Case("MOD(7, 0)", ERROR, "INT64"),
    Case("2147483647 + 1", 2147483648, "INT64"),
    Case("100000 * 100000", 10000000000, "INT64"),
    Case("-2147483648 - 1", -2147483649, "INT64"),
    Case("9223372036854775807 + 1", ERROR, "INT64"),
    Case("9223372036854775807 * 2", ERROR, "INT64"),
    Case("CAST('9223372036854775808' AS INT64)", ERROR, "INT64"),
    Case("NUMERIC '1' / NUMERIC '3'", Decimal("0.333333333"), "NUMERIC"),
    Case("NUMERIC '2' / NUMERIC '3'", Decimal("0.666666667"), "NUMERIC"),
    # NULL semantics: https://cloud.google.com/bigquery/docs/reference/standard-sql/operators
    # (an operator with a NULL operand gives NULL, except IS; IN with a NULL in the
    # list gives NULL when nothing matches; AND and OR are three-valued)
    Case("NULL + 1", None, "INT64"),
    Case("1 = NULL", None, "BOOL"),
    Case("NULL IS NULL", True, "BOOL"),
    Case("1 IN (1, NULL)", True, "BOOL"),
    Case("2 IN (1, NULL)", None, "BOOL"),
    Case("2 NOT IN (1, NULL)", None, "BOOL"),
    Case("NULL AND FALSE", False, "BOOL"),
    Case("NULL AND TRUE", None, "BOOL"),
    Case("NULL OR TRUE", True, "BOOL"),
    Case("NOT CAST(NULL AS BOOL)", None, "BOOL"),
    Case("NULL IS DISTINCT FROM NULL", False, "BOOL"),
    Case("1 IS DISTINCT FROM NULL", True, "BOOL"),
    Case("1 IS NOT DISTINCT FROM 1", True, "BOOL"),
    Case("CAST(NULL AS INT64) < 1", None, "BOOL"),
    # Conditional expressions:
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/conditional_expressions
    Case("IF(1 > 0, 'yes', 'no')", "yes", "STRING"),
    Case("IF(NULL, 1, 2)", 2, "INT64"),
    Case("IF(1 > 2, 1, NULL)", None, "INT64"),
    Case("CASE WHEN 1 > 2 THEN 'a' WHEN 2 > 1 THEN 'b' END", "b", "STRING"),
    Case("CASE 1 WHEN 1 THEN 'one' ELSE 'other' END", "one", "STRING"),
    Case("CASE NULL WHEN NULL THEN 'a' ELSE 'b' END", "b", "STRING"),
    Case("CASE WHEN 1 > 2 THEN 'a' END", None, "STRING"),
    Case("COALESCE(NULL, 'B', 'C')", "B", "STRING"),
    Case("COALESCE(NULL, NULL)", None, "INT64"),
    Case("IFNULL(NULL, 0)", 0, "INT64"),
    Case("IFNULL(10, 0)", 10, "INT64"),
    Case("NULLIF(0, 0)", None, "INT64"),
    Case("NULLIF(10, 0)", 10, "INT64"),
    # Aggregates: https://cloud.google.com/bigquery/docs/reference/standard-sql/aggregate_functions
    # (NULLs are ignored; SUM, AVG, MAX of no rows are NULL, COUNT of no rows is 0)
    Case("SELECT COUNT(*) FROM UNNEST([1, NULL, 3]) AS x", 3, "INT64"),
    Case("SELECT COUNT(x) FROM UNNEST([1, NULL, 3]) AS x", 2, "INT64"),
    Case("SELECT COUNT(DISTINCT x) FROM UNNEST([1, 1, 2, NULL]) AS x", 2, "INT64"),
    Case("SELECT COUNT(x) FROM UNNEST([1, 2]) AS x WHERE x > 5", 0, "INT64"),
    Case("SELECT COUNTIF(x < 0) FROM UNNEST([5, -2, 3, 6, -10, -7, 4, 0]) AS x", 3, "INT64"),
    Case("SELECT COUNTIF(x > 0) FROM UNNEST([5, -2, 3, 6, -10, -7, 4, 0]) AS x", 4, "INT64"),
    Case("SELECT COUNTIF(x) FROM UNNEST([TRUE, NULL, FALSE, TRUE]) AS x", 2, "INT64"),
    Case("SELECT COUNTIF(x > 9) FROM UNNEST([1, 2]) AS x", 0, "INT64"),
    Case("SELECT SUM(x) FROM UNNEST([1, 2, 3, 4, 5, 4, 3, 2, 1]) AS x", 25, "INT64"),
    Case("SELECT SUM(DISTINCT x) FROM UNNEST([1, 2, 3, 4, 5, 4, 3, 2, 1]) AS x", 15, "INT64"),
    Case("SELECT SUM(x) FROM UNNEST([1, 2]) AS x WHERE x > 5", None, "INT64"),
    Case(
        "SELECT SUM(x) FROM UNNEST([NUMERIC '0.1', NUMERIC '0.2']) AS x", Decimal("0.3"), "NUMERIC"
    ),
    Case("SELECT AVG(x) FROM UNNEST([0, 2, 4, 4, 5]) AS x", 3.0, "FLOAT64"),
    Case("SELECT AVG(DISTINCT x) FROM UNNEST([0, 2, 4, 4, 5]) AS x", 2.75, "FLOAT64"),
    Case("SELECT AVG(x) FROM UNNEST([1, 2]) AS x", 1.5, "FLOAT64"),
    Case("SELECT MAX(x) FROM UNNEST([8, 37, 55, 4]) AS x", 55, "INT64"),
    Case("SELECT MIN(x) FROM UNNEST([8, 37, 55, 4]) AS x", 4, "INT64"),
    Case("SELECT MAX(x) FROM UNNEST(['apple', 'pear']) AS x", "pear", "STRING"),
    Case("SELECT LOGICAL_AND(x) FROM UNNEST([TRUE, FALSE, TRUE]) AS x", False, "BOOL"),
    Case("SELECT LOGICAL_AND(x) FROM UNNEST([TRUE, NULL]) AS x", True, "BOOL"),
    Case("SELECT LOGICAL_OR(x) FROM UNNEST([TRUE, FALSE, TRUE]) AS x", True, "BOOL"),
    Case("SELECT LOGICAL_OR(x) FROM UNNEST([FALSE, NULL]) AS x", False, "BOOL"),
    Case(
        "SELECT STRING_AGG(fruit, ' & ' ORDER BY fruit) "
        "FROM UNNEST(['apple', NULL, 'pear', 'banana', 'pear']) AS fruit",
        "apple & banana & pear & pear",
        "STRING",
    ),
    Case(
        "SELECT STRING_AGG(fruit ORDER BY fruit DESC) FROM UNNEST(['apple', 'pear']) AS fruit",
        "pear,apple",
        "STRING",
    ),
    Case(
        "SELECT ARRAY_AGG(x ORDER BY x) FROM UNNEST([2, 1, -2, 3, -2, 1, 2]) AS x",
        [-2, -2, 1, 1, 2, 2, 3],
        "ARRAY",
    ),
    Case(
        "SELECT ARRAY_AGG(DISTINCT x ORDER BY x) FROM UNNEST([2, 1, -2, 3, -2, 1, 2]) AS x",
        [-2, 1, 2, 3],
        "ARRAY",
    ),
    Case("SELECT BIT_XOR(x) FROM UNNEST([5678, 1234]) AS x", 4860, "INT64"),
    Case("SELECT BIT_AND(x) FROM UNNEST([61441, 161]) AS x", 1, "INT64"),
    Case("SELECT BIT_OR(x) FROM UNNEST([61441, 161]) AS x", 61601, "INT64"),
    Case("SELECT STDDEV_SAMP(x) FROM UNNEST([10, 14, 18]) AS x", 4.0, "FLOAT64"),
    Case("SELECT STDDEV(x) FROM UNNEST([10, 14, 18]) AS x", 4.0, "FLOAT64"),
    Case("SELECT STDDEV_POP(x) FROM UNNEST([10, 14, 18]) AS x", 3.265986323710904, "FLOAT64"),
    Case("SELECT VAR_SAMP(x) FROM UNNEST([10, 14, 18]) AS x", 16.0, "FLOAT64"),
    Case("SELECT VAR_POP(x) FROM UNNEST([10, 14, 18]) AS x", 10.666666666666666, "FLOAT64"),
    Case("SELECT ANY_VALUE(x) FROM UNNEST([7]) AS x", 7, "INT64"),
    # Approximate aggregates:
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/approximate_aggregate_functions
    Case("SELECT APPROX_COUNT_DISTINCT(x) FROM UNNEST([0, 1, 1, 2, 3, 5]) AS x", 5, "INT64"),
    Case(
        "SELECT APPROX_QUANTILES(x, 2) FROM UNNEST([1, 1, 1, 4, 5, 6, 7, 8, 9, 10]) AS x",
        [1, 5, 10],
        "ARRAY",
        BOTH,
    ),
    Case(
        "SELECT APPROX_TOP_COUNT(x, 1)[OFFSET(0)].value FROM UNNEST(['a', 'b', 'a']) AS x",
        "a",
        "STRING",
        BOTH,
    ),
    Case(
        "SELECT APPROX_TOP_SUM(x, w, 1)[OFFSET(0)].value "
        "FROM UNNEST([STRUCT('a' AS x, 1 AS w), ('b', 5)])",
        "b",
        "STRING",
        BOTH,
    ),
    # Window functions:
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/numbering_functions
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/navigation_functions
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/window-function-calls
    # (the default frame with ORDER BY is RANGE UNBOUNDED PRECEDING: peers share a value)
    Case(
        "SELECT ROW_NUMBER() OVER (ORDER BY x) FROM UNNEST([3, 1, 2]) AS x ORDER BY x",
        [1, 2, 3],
        "ROWS",
    ),
    Case(
        "SELECT RANK() OVER (ORDER BY x) FROM UNNEST([10, 20, 20, 30]) AS x ORDER BY x",
        [1, 2, 2, 4],
        "ROWS",
    ),
    Case(
        "SELECT DENSE_RANK() OVER (ORDER BY x) FROM UNNEST([10, 20, 20, 30]) AS x ORDER BY x",
        [1, 2, 2, 3],
        "ROWS",
    ),
    Case(
        "SELECT PERCENT_RANK() OVER (ORDER BY x) FROM UNNEST([10, 20, 20, 30]) AS x ORDER BY x",
        [0.0, 1 / 3, 1 / 3, 1.0],
        "ROWS",
    ),
    Case(
        "SELECT CUME_DIST() OVER (ORDER BY x) FROM UNNEST([10, 20, 20, 30]) AS x ORDER BY x",
        [0.25, 0.75, 0.75, 1.0],
        "ROWS",
    ),
    Case(
        "SELECT NTILE(3) OVER (ORDER BY x) FROM UNNEST([1, 2, 3, 4]) AS x ORDER BY x",
        [1, 1, 2, 3],
        "ROWS",
    ),
    Case(
        "SELECT LAG(x) OVER (ORDER BY x) FROM UNNEST([10, 20, 30]) AS x ORDER BY x",
        [None, 10, 20],
        "ROWS",
    ),
    Case(
        "SELECT LAG(x, 1, 0) OVER (ORDER BY x) FROM UNNEST([10, 20, 30]) AS x ORDER BY x",
        [0, 10, 20],
        "ROWS",
    ),
    Case(
        "SELECT LEAD(x) OVER (ORDER BY x) FROM UNNEST([10, 20, 30]) AS x ORDER BY x",
        [20, 30, None],
        "ROWS",
    ),
    Case(
        "SELECT LEAD(x, 2) OVER (ORDER BY x) FROM UNNEST([10, 20, 30]) AS x ORDER BY x",
        [30, None, None],
        "ROWS",
    ),
    Case(
        "SELECT FIRST_VALUE(x) OVER (ORDER BY x DESC) FROM UNNEST([10, 20, 30]) AS x ORDER BY x",
        [30, 30, 30],
        "ROWS",
    ),
    Case(
        "SELECT LAST_VALUE(x) OVER (ORDER BY x) FROM UNNEST([10, 20, 20, 30]) AS x ORDER BY x",
        [10, 20, 20, 30],
        "ROWS",
    ),
    Case(
        "SELECT NTH_VALUE(x, 2) OVER (ORDER BY x ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED "
        "FOLLOWING) FROM UNNEST([10, 20, 30]) AS x ORDER BY x",
        [20, 20, 20],
        "ROWS",
    ),
    Case(
        "SELECT SUM(x) OVER (ORDER BY x) FROM UNNEST([10, 20, 20, 30]) AS x ORDER BY x",
        [10, 50, 50, 80],
        "ROWS",
    ),
    Case(
        "SELECT SUM(x) OVER (ORDER BY x ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) "
        "FROM UNNEST([10, 20, 30, 40]) AS x ORDER BY x",
        [10, 30, 50, 70],
        "ROWS",
    ),
    Case(
        "SELECT AVG(x) OVER () FROM UNNEST([10, 20, 30]) AS x ORDER BY x",
        [20.0, 20.0, 20.0],
        "ROWS",
    ),
    Case(
        "SELECT COUNT(*) OVER (PARTITION BY MOD(x, 2)) FROM UNNEST([1, 2, 3, 5]) AS x ORDER BY x",
        [3, 1, 3, 3],
        "ROWS",
    ),
    Case(
        "SELECT PERCENTILE_CONT(x, 0.5) OVER () FROM UNNEST([0, 3, NULL, 1, 2]) AS x LIMIT 1",
        [1.5],
        "ROWS",
        PG,
    ),
    Case(
        "SELECT PERCENTILE_DISC(x, 0.5) OVER () FROM UNNEST(['c', NULL, 'b', 'a']) AS x LIMIT 1",
        ["b"],
        "ROWS",
        PG,
    ),
    # Arrays (OFFSET counts from 0, ORDINAL from 1, SAFE_ gives NULL out of range):
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/array_functions
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/operators#array_subscript_operator
    Case("ARRAY_LENGTH([1, 2, 3])", 3, "INT64"),
    Case("[1, 2, 3][OFFSET(0)]", 1, "INT64", BOTH),
    Case("[1, 2, 3][ORDINAL(1)]", 1, "INT64", BOTH),
    Case("[1, 2, 3][SAFE_OFFSET(5)]", None, "INT64"),
    Case("[1, 2, 3][SAFE_ORDINAL(0)]", None, "INT64"),
    Case("[1, 2, 3][OFFSET(5)]", ERROR, "INT64", BOTH),
    Case("ARRAY_CONCAT([1, 2], [3, 4], [5, 6])", [1, 2, 3, 4, 5, 6], "ARRAY"),
    Case("ARRAY_REVERSE([1, 2, 3])", [3, 2, 1], "ARRAY", PG),
    Case(
        "ARRAY_TO_STRING(['coffee', 'tea', 'milk', NULL], '--', 'MISSING')",
        "coffee--tea--milk--MISSING",
        "STRING",
    ),
    Case("ARRAY_TO_STRING(['cake', 'pie', NULL], '--')", "cake--pie", "STRING"),
    Case("GENERATE_ARRAY(1, 5)", [1, 2, 3, 4, 5], "ARRAY"),
    Case("GENERATE_ARRAY(0, 10, 3)", [0, 3, 6, 9], "ARRAY"),
    Case("GENERATE_ARRAY(10, 0, -3)", [10, 7, 4, 1], "ARRAY"),
    Case("GENERATE_ARRAY(4, 4, 10)", [4], "ARRAY"),
    Case("ARRAY_LENGTH(GENERATE_ARRAY(10, 0, 3))", 0, "INT64"),
    Case(
        "GENERATE_DATE_ARRAY('2016-10-05', '2016-10-08')",
        [D("2016-10-05"), D("2016-10-06"), D("2016-10-07"), D("2016-10-08")],
        "ARRAY",
    ),
    Case(
        "GENERATE_DATE_ARRAY('2016-10-05', '2016-10-09', INTERVAL 2 DAY)",
        [D("2016-10-05"), D("2016-10-07"), D("2016-10-09")],
        "ARRAY",
    ),
    Case("3 IN UNNEST([1, 2, 3])", True, "BOOL"),
    Case("(SELECT SUM(x) FROM UNNEST([1, 2, 3]) AS x)", 6, "INT64"),
    Case("ARRAY(SELECT x * 2 FROM UNNEST([1, 2, 3]) AS x ORDER BY x)", [2, 4, 6], "ARRAY"),
    Case(
        "SELECT STRING_AGG(CONCAT(x, CAST(o AS STRING)), ',' ORDER BY o) "
        "FROM UNNEST(['a', 'b', 'c']) AS x WITH OFFSET o",
        "a0,b1,c2",
        "STRING",
        BOTH,
    ),
    Case("ARRAY_FIRST(['a', 'b', 'c'])", "a", "STRING", BOTH),
    # JSON (JSON_VALUE gives a scalar's text, NULL for an object or array):
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/json_functions
    Case("""JSON_VALUE('{"name": "Jakob", "age": "6"}', '$.name')""", "Jakob", "STRING", PG),
    Case("""JSON_VALUE('{"a": {"b": 1}}', '$.a.b')""", "1", "STRING", PG),
    Case("""JSON_VALUE('{"a": [10, 20]}', '$.a[1]')""", "20", "STRING", PG),
    Case("""JSON_VALUE('{"a": [1, 2]}', '$.a')""", None, "STRING", PG),
    Case("""JSON_VALUE('{"a": true}', '$.a')""", "true", "STRING", PG),
    Case("""JSON_VALUE('{"a": null}', '$.a')""", None, "STRING", PG),
    Case("""JSON_VALUE('{"a": 1}', '$.b')""", None, "STRING", PG),
    Case("""JSON_EXTRACT_SCALAR('{"a": "x"}', '$.a')""", "x", "STRING", PG),
    Case("""JSON_EXTRACT('{"a": {"b": 1}}', '$.a')""", '{"b":1}', "STRING", PG),
    Case(
        """JSON_QUERY('{"class": {"students": [{"name": "Jane"}]}}', '$.class.students[0].name')""",
        '"Jane"',
        "STRING",
        PG,
    ),
    Case("""JSON_EXTRACT_ARRAY('[1, 2, 3]')""", ["1", "2", "3"], "ARRAY", PG),
    Case("""JSON_VALUE_ARRAY('["a", "b"]')""", ["a", "b"], "ARRAY", PG),
    Case("""JSON_VALUE(JSON '{"a": 1}', '$.a')""", "1", "STRING", PG),
    Case("""TO_JSON_STRING(STRUCT(1 AS a))""", '{"a":1}', "STRING", PG),
]


def query_of(case: Case) -> str:
    return case.sql if case.sql.startswith("SELECT ") else f"SELECT {case.sql} AS v"


def outcome(run: Run, case: Case) -> tuple[str, Any]:
    """("refused", message), ("error", message) or ("rows", the first column's values),
    through the metrics engine's own transpile step and warehouse query."""
    try:
        sql = run.transpile(query_of(case))
    except Refused as exc:
        return "refused", exc.message
    try:
        rows = run.query(sql).to_pylist()
    except Exception as exc:  # the engine's own error: what BigQuery's would be
        return "error", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return "rows", [next(iter(row.values())) for row in rows]


def type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, dt.datetime):
        return "DATETIME" if value.tzinfo is None else "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    return "STRING"


def same(actual: Any, expected: Any, kind: str) -> bool:
    """The engine's value is BigQuery's, as the metrics engine would write it."""
    if expected is None or actual is None:
        return actual is expected
    if kind in ("INT64", "FLOAT64", "NUMERIC"):
        # PostgreSQL's numeric comes as text, DuckDB's HUGEINT as a Decimal: the
        # engine reads every number as a decimal, and so does this comparison
        if isinstance(actual, bool) or not isinstance(actual, int | float | Decimal | str):
            return False
        written = exact(actual, "v")
        integral = kind != "INT64" or written == written.to_integral_value()
        return integral and written == exact(expected, "v")
    if kind == "ARRAY":
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same(a, e, type_of(e)) for a, e in zip(actual, expected, strict=True))
        )
    if kind == "DATE":
        return type(actual) is dt.date and actual == expected
    if kind == "DATETIME":
        return isinstance(actual, dt.datetime) and actual.tzinfo is None and actual == expected
    if kind == "TIMESTAMP":
        return isinstance(actual, dt.datetime) and actual.tzinfo is not None and actual == expected
    return type(actual) is type(expected) and actual == expected


def check(run: Run, case: Case) -> str | None:
    """None when the engine gives BigQuery's answer (or refuses as the case says),
    else what went wrong."""
    engine = run.target_dialect
    kind, got = outcome(run, case)
    if engine in case.refused:
        if kind != "refused":
            return f"expected a refusal, got {kind} {got!r}"
        return None if refusal_names(got, engine) else f"refusal message lacks names: {got}"
    if kind == "refused":
        return f"refused: {got}"
    if case.expected is ERROR:
        return None if kind == "error" else f"BigQuery raises an error; got {got!r}"
    if kind == "error":
        return got  # type: ignore[no-any-return]
    if case.type == "ROWS":
        ok = len(got) == len(case.expected) and all(
            same(a, e, type_of(e)) for a, e in zip(got, case.expected, strict=True)
        )
    else:
        ok = len(got) == 1 and same(got[0], case.expected, case.type)
    return None if ok else f"got {got!r}, BigQuery gives {case.expected!r}"


def refusal_names(message: str, engine: str) -> bool:
    """The refusal names a function of the table, the engine and what to use instead."""
    names = {"duckdb": "DuckDB", "postgres": "PostgreSQL"}
    functions = [r.function for r in REFUSED if engine in r.engines]
    return (
        names[engine] in message
        and "instead" in message
        and any(message.startswith(f) for f in functions)
    )


@pytest.fixture(scope="module")
def runs(postgres_server: Any) -> Iterator[dict[str, Run]]:
    """The metrics engine's Run on DuckDB (in memory) and on one PostgreSQL database."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    resources = RunResources(Path.cwd(), "fidelity")
    day = dt.date(2024, 1, 15)
    duck = DuckDBConnection(type="duckdb", path=":memory:")
    pg = PostgresConnection(type="postgres", dsn=postgres_server.dsn(name), sslmode="disable")
    yield {
        "duckdb": Run(duck, resources, day, None, "metrics_recon"),
        "postgres": Run(pg, resources, day, None, "metrics_recon"),
    }
    resources.close()
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as con:
        con.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=[c.sql[:60] for c in CASES])
def test_bigquerys_documented_answer_or_a_refusal(
    runs: dict[str, Run], engine: str, case: Case
) -> None:
    assert check(runs[engine], case) is None, check(runs[engine], case)


REFUSED_CASES = [(e, c) for c in CASES for e in c.refused]


@pytest.mark.parametrize(
    ("engine", "case"), REFUSED_CASES, ids=[f"{e}-{c.sql[:50]}" for e, c in REFUSED_CASES]
)
def test_metrics_validate_reports_the_refusal(engine: str, case: Case) -> None:
    sql = (
        f"SELECT ({query_of(case)}) AS metric_output"
        if case.sql.startswith("SELECT ")
        else (f"SELECT {case.sql} AS metric_output")
    )
    metric = {
        "metric_id": "m1",
        "metric_name": "M1",
        "metric_type": "count",
        "sql": f"{sql}, 1 AS numerator_value, 1 AS denominator_value, "
        "'{currently}' AS business_data_date",
        "dependency": "daily",
        "target_table": "analytics.metrics",
    }
    _, problems = definitions.parse(json.dumps([metric]))
    messages = [p.message for p in problems if p.field == "sql"]
    names = {"duckdb": "DuckDB", "postgres": "PostgreSQL"}
    assert any(refusal_names(m, engine) for m in messages), messages
    assert all(names[e] in " ".join(messages) for e in case.refused)


def test_a_metrics_run_refuses_with_the_function_the_engine_and_the_fix(tmp_path: Path) -> None:
    duck = DuckDBConnection(type="duckdb", path=str(tmp_path / "wh.duckdb"))
    metric = definitions.Metric(
        "week_of_sale",
        "Week of sale",
        "count",
        "SELECT EXTRACT(WEEK FROM DATE '2017-11-05') AS metric_output, 1 AS numerator_value, "
        "1 AS denominator_value, '{currently}' AS business_data_date",
        "daily",
        "analytics.metrics",
    )
    refused = definitions.Metric(
        "quantiles",
        "Quantiles",
        "count",
        "SELECT APPROX_QUANTILES(x, 2)[SAFE_OFFSET(1)] AS metric_output, 1 AS numerator_value, "
        "1 AS denominator_value, '{currently}' AS business_data_date FROM UNNEST([1, 2]) AS x",
        "daily",
        "analytics.metrics",
    )
    resources = RunResources(tmp_path, "fidelity")
    try:
        run = Run(duck, resources, dt.date(2024, 1, 15), None, "metrics_recon")
        week, quantile = run_metrics(run, [metric, refused])
    finally:
        resources.close()
    assert week.status == "Passed"
    assert week.row is not None
    assert week.row["metric_output"] == Decimal(45)  # Sunday-based weeks
    assert quantile.status == "Failed"
    assert quantile.error_category == "SQL_EXECUTION_ERROR"
    assert quantile.error_message is not None
    assert quantile.error_message.startswith("APPROX_QUANTILES is refused on DuckDB")
    assert "instead" in quantile.error_message


def test_every_refusal_in_the_table_is_exercised_by_a_case() -> None:
    import sqlglot

    hit = set()
    for case in CASES:
        tree = sqlglot.parse_one(query_of(case), read="bigquery")
        for engine in case.refused:
            hit.update(
                (r.function, engine)
                for r in REFUSED
                if engine in r.engines and any(r.matches(n) for n in tree.walk())
            )
    table = {(r.function, e) for r in REFUSED for e in r.engines}
    assert table - hit == set()
    assert refusals(sqlglot.parse_one("SELECT 1"), "postgres") == []
