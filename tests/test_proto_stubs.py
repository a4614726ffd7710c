"""The committed gRPC stubs are exactly what ``make proto`` generates now."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = "callfs/storage/v1/storage.proto"
GENERATED = ("storage_pb2.py", "storage_pb2_grpc.py", "storage_pb2.pyi")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stubs")
    include = resources.files("grpc_tools") / "_proto"
    arguments = [
        "grpc_tools.protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        str(ROOT / "proto" / PROTO),
    ]
    assert protoc.main(arguments) == 0
    return out / "callfs" / "storage" / "v1"


@pytest.mark.parametrize("name", GENERATED)
def test_committed_stubs_match_the_proto(regenerated: Path, name: str) -> None:
    committed = ROOT / "src" / "callfs" / "storage" / "v1" / name
    assert committed.read_bytes() == (regenerated / name).read_bytes(), (
        f"src/callfs/storage/v1/{name} is stale: run `make proto` and commit the result"
    )
