"""Removing objects in batches: the node's DeleteMany over real gRPC, and the backend's
delete_many across replicas, a stopped node and a node of an older release."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from callfs_storage_node.checksums import sidecar_of
from callfs_storage_node.servicer import MAX_DELETE_BATCH, StorageNodeServicer
from callfs_storage_node.volume import Volume

from callfs.backends.base import ObjectRef, new_object_key
from callfs.backends.storage_node import StorageNodeBackend
from callfs.discovery.base import StaticDiscovery
from callfs.errors import BackendUnavailable
from callfs.storage.v1 import storage_pb2
from callfs.storage.wire import SERVICE
from tests.storage_node.conftest import METADATA, SECRET, RunningNode, start_node
from tests.storage_node.test_servicer import Stub, write

NAMES = ("node-0", "node-1", "node-2")


def stored(root: Path, key: str) -> bool:
    """Whether the object ``key`` or its sidecar is still on the volume at ``root``."""
    return (root / key).exists() or Path(sidecar_of(str(root / key))).exists()


async def test_delete_many_removes_files_and_sidecars_and_leaves_what_is_no_file(
    stub: Stub, node: RunningNode
) -> None:
    await write(stub, "ab/one", b"one", create_parents=True)
    await write(stub, "ab/two", b"two")
    (node.root / "ab" / "folder").mkdir()
    assert Path(sidecar_of(str(node.root / "ab/one"))).exists()

    answer = await stub.DeleteMany(
        storage_pb2.DeleteManyRequest(paths=["ab/one", "ab/absent", "ab/folder", "ab/two"]),
        metadata=METADATA,
    )

    assert list(answer.removed) == [True, False, False, True]
    assert not stored(node.root, "ab/one") and not stored(node.root, "ab/two")
    assert (node.root / "ab" / "folder").is_dir()


@pytest.mark.parametrize("bad", ["../outside", "/absolute", "ab/.callfs-tmp-x", ""])
async def test_one_invalid_path_fails_the_call_before_anything_goes(
    stub: Stub, node: RunningNode, bad: str
) -> None:
    await write(stub, "ab/kept", b"kept", create_parents=True)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.DeleteMany(
            storage_pb2.DeleteManyRequest(paths=["ab/kept", bad]), metadata=METADATA
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (node.root / "ab" / "kept").read_bytes() == b"kept"


async def test_more_paths_than_a_call_takes_are_invalid_argument(stub: Stub) -> None:
    paths = [f"ab/{number}" for number in range(MAX_DELETE_BATCH + 1)]
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.DeleteMany(storage_pb2.DeleteManyRequest(paths=paths), metadata=METADATA)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(MAX_DELETE_BATCH) in str(failure.value.details())


async def test_delete_many_needs_the_internal_secret(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.DeleteMany(storage_pb2.DeleteManyRequest(paths=["ab/x"]))
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[dict[str, RunningNode]]:
    running = {name: await start_node(tmp_path / name) for name in NAMES}
    yield running
    for node in running.values():
        await node.server.stop(0)


async def written(backend: StorageNodeBackend, count: int) -> list[ObjectRef]:
    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    refs = []
    for number in range(count):
        ref = await backend.new_object(f"/batch/{number}")
        result = await backend.write(ref, one(b"%d" % number))
        refs.append(ObjectRef("localfs", ref.key, result.replicas))
    return refs


async def test_every_replica_of_every_object_goes(nodes: dict[str, RunningNode]) -> None:
    discovery = StaticDiscovery({name: node.address for name, node in nodes.items()})
    backend = StorageNodeBackend(discovery, SECRET, timeout=5.0, replication=2)
    await backend.start()
    try:
        refs = await written(backend, 30)
        assert all(len(ref.replicas) == 2 for ref in refs)
        absent = ObjectRef("localfs", new_object_key(), ("node-0", "node-1"))

        assert await backend.delete_many([*refs, absent]) == []

        for ref in refs:
            for name in NAMES:
                assert not stored(nodes[name].root, ref.key)
    finally:
        await backend.close()


async def test_objects_on_a_stopped_node_fail_and_the_others_go(
    nodes: dict[str, RunningNode],
) -> None:
    discovery = StaticDiscovery({name: node.address for name, node in nodes.items()})
    backend = StorageNodeBackend(discovery, SECRET, timeout=5.0, replication=2)
    await backend.start()
    try:
        refs = await written(backend, 30)
        await nodes["node-2"].server.stop(0)

        failed = await backend.delete_many(refs)

        on_stopped = [ref for ref in refs if "node-2" in ref.replicas]
        assert on_stopped and len(on_stopped) < len(refs)
        assert [ref for ref, _ in failed] == on_stopped
        assert all(isinstance(reason, BackendUnavailable) for _, reason in failed)
        for ref in refs:
            for name in ("node-0", "node-1"):
                assert not stored(nodes[name].root, ref.key)
    finally:
        await backend.close()


async def test_a_ref_naming_no_node_fails_alone(nodes: dict[str, RunningNode]) -> None:
    discovery = StaticDiscovery({"node-0": nodes["node-0"].address})
    backend = StorageNodeBackend(discovery, SECRET, timeout=5.0)
    await backend.start()
    try:
        (ref,) = await written(backend, 1)
        nowhere = ObjectRef("localfs", new_object_key())
        failed = await backend.delete_many([nowhere, ref])
        assert [ref for ref, _ in failed] == [nowhere]
        assert not stored(nodes["node-0"].root, ref.key)
    finally:
        await backend.close()


async def test_a_node_without_delete_many_has_its_objects_deleted_one_by_one(
    tmp_path: Path,
) -> None:
    """A node of an older release answers UNIMPLEMENTED: the backend falls back to Delete."""
    volume = Volume(tmp_path / "old")
    servicer = StorageNodeServicer(volume, max_message_bytes=8 * 1024 * 1024)
    older = {
        "Delete": grpc.unary_unary_rpc_method_handler(
            servicer.Delete,
            storage_pb2.DeleteRequest.FromString,
            storage_pb2.DeleteResponse.SerializeToString,
        )
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, older),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    keys = [new_object_key() for _ in range(20)]
    for key in keys:
        (tmp_path / "old" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "old" / key).write_bytes(b"x")
    backend = StorageNodeBackend(
        StaticDiscovery({"node-old": f"127.0.0.1:{port}"}), SECRET, timeout=5.0
    )
    await backend.start()
    try:
        refs = [ObjectRef("localfs", key, ("node-old",)) for key in keys]
        assert await backend.delete_many(refs[:10]) == []
        assert await backend.delete_many(refs[10:]) == []
        assert not any((tmp_path / "old" / key).exists() for key in keys)
    finally:
        await backend.close()
        await server.stop(0)
