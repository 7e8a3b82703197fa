"""The throughput benchmark behind ``torchdata-s3ext bench``: methods, a runner (one process per method),
the article's window statistics, and the report (table, JSON, chart)."""
