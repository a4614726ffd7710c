"""pandas and pyarrow read and write CallFS through ``callfs://`` URLs and fsspec."""

from __future__ import annotations

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import FileType, FSSpecHandler, PyFileSystem

from callfs.client.fsspec import CallFSFileSystem
from tests.fsspec.conftest import Server

FRAME = pd.DataFrame(
    {"city": ["Lyon", "Oslo", "Quito"], "altitude": [173, 23, 2850], "ratio": [0.5, 1.25, 3.0]}
)


def test_pandas_csv_round_trip_by_url(server: Server, callfs: CallFSFileSystem, home: str) -> None:
    url = f"callfs://{home}/data/cities.csv"
    FRAME.to_csv(url, index=False, storage_options=server.options)
    assert callfs.cat_file(f"{home}/data/cities.csv").startswith(b"city,altitude,ratio\n")
    read = pd.read_csv(url, storage_options=server.options)
    pd.testing.assert_frame_equal(read, FRAME)
    # Two slashes name the same path: the URL never names the server.
    pd.testing.assert_frame_equal(
        pd.read_csv(f"callfs:/{home}/data/cities.csv", storage_options=server.options), FRAME
    )


def test_pandas_csv_configured_from_the_environment(
    server: Server, home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLFS_URL", server.url)
    monkeypatch.setenv("CALLFS_API_KEY", server.key)
    FRAME.to_csv(f"callfs://{home}/env.csv.gz", index=False)  # compression inferred
    pd.testing.assert_frame_equal(pd.read_csv(f"callfs://{home}/env.csv.gz"), FRAME)


def test_pandas_parquet_round_trip_by_url(server: Server, home: str) -> None:
    url = f"callfs://{home}/cities.parquet"
    FRAME.to_parquet(url, storage_options=server.options)
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=server.options), FRAME)


def test_pyarrow_parquet_through_the_filesystem(server: Server, home: str) -> None:
    fs = fsspec.filesystem("callfs", **server.options)
    table = pa.Table.from_pandas(FRAME, preserve_index=False)
    pq.write_table(table, f"{home}/t.parquet", filesystem=fs, row_group_size=1)
    assert pq.read_table(f"{home}/t.parquet", filesystem=fs).equals(table)
    assert pq.read_table(f"{home}/t.parquet", filesystem=fs, columns=["altitude"]).equals(
        table.select(["altitude"])
    )
    with fs.open(f"{home}/t.parquet", "rb") as f:  # random access: footer, then row groups
        parquet = pq.ParquetFile(f)
        assert parquet.metadata.num_row_groups == 3
        assert parquet.read_row_group(2).column("city").to_pylist() == ["Quito"]


def test_pyarrow_datasets_and_file_info(
    server: Server, callfs: CallFSFileSystem, home: str
) -> None:
    arrow = PyFileSystem(FSSpecHandler(callfs))
    table = pa.Table.from_pandas(FRAME, preserve_index=False)
    for part in ("a", "b"):
        pq.write_table(table, f"{home}/set/part={part}/0.parquet", filesystem=arrow)
    dataset = ds.dataset(f"{home}/set", filesystem=arrow, format="parquet", partitioning="hive")
    assert dataset.to_table().num_rows == 6
    info = arrow.get_file_info(f"{home}/set/part=a/0.parquet")
    assert info.type == FileType.File and info.size == callfs.size(info.path)
    assert info.mtime is not None
    assert arrow.get_file_info(f"{home}/set").type == FileType.Directory
    assert arrow.get_file_info(f"{home}/nope").type == FileType.NotFound
