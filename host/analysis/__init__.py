"""Analysis of stored cells: tables and the CSV/Parquet report."""
